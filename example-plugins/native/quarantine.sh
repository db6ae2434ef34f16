#!/bin/sh
# quarantine.sh: an example native post action (process runtime), plain POSIX sh + coreutils.
#
# Usage (as the host runs it): quarantine.sh <quarantine dir> [args...] <file>
#
# Reads the scan result JSON from stdin (one compact line). When the file was blocked
# ("result":"Blocked" in process_info, not in the submission's metadata), copies it to <quarantine dir>/<data_id>-<file name>.
# An allowed file is left alone. Exits 0 on success, non-zero with a message on stderr on
# failure. The JSON is matched with grep/sed, which is enough for the host's compact line.
PATH=/usr/local/bin:/usr/bin:/bin
export PATH
LC_ALL=C
export LC_ALL

fail() {
    printf 'quarantine: %s\n' "$*" >&2
    exit 1
}

[ "$#" -ge 2 ] || fail "usage: quarantine.sh <quarantine dir> [args...] <file>"
dir=$1
for last in "$@"; do :; done
file=$last

json=$(cat) || fail "cannot read stdin"
[ -n "$json" ] || fail "no scan result JSON on stdin"

# Look at the host's own fields only: everything before the submitter's "metadata" (the host
# writes it last), so that metadata cannot fake the decision. Client-supplied strings elsewhere
# (file name, user agent) are JSON-escaped and cannot hold the pattern's bare quotes.
decision=${json%%,\"metadata\":*}
case $decision in
    *'"result":"Blocked"'*) ;;
    *) exit 0 ;; # allowed: nothing to do
esac

# The first "data_id" is the submission's (the host writes it first); keep it safe as a
# file name component.
data_id=$(printf '%s' "$json" | grep -o '"data_id":"[^"]*"' | head -n 1 | sed 's/^"data_id":"\(.*\)"$/\1/')
[ -n "$data_id" ] || fail "no data_id in the scan result JSON"
case $data_id in
    *[!A-Za-z0-9_-]*) fail "unexpected data_id: $data_id" ;;
esac

[ -f "$file" ] || fail "not a regular file: $file"
name=$(basename -- "$file")
mkdir -p -- "$dir" || fail "cannot create $dir"
cp -- "$file" "$dir/$data_id-$name" || fail "cannot copy $file to $dir"
