#!/bin/sh
# exec-detector.sh: an example native scanner (process runtime), plain POSIX sh + coreutils.
#
# Marks executables and scripts as Suspicious (2): ELF, PE ("MZ"), Mach-O (thin and universal)
# and shebang ("#!") scripts; anything else is No Threat Detected (0). Prints the contract's
# JSON object, pretty-printed like real scanners do.
#
# Usage (as the host runs it): exec-detector.sh [args...] <file>   (scan result JSON on stdin)
# Cordon runs process plugins with an empty environment, hence the PATH below.
PATH=/usr/local/bin:/usr/bin:/bin
export PATH
LC_ALL=C
export LC_ALL

# When these "definitions" were written, ms since epoch (2026-01-01T00:00:00Z).
DEF_TIME=1767225600000

fail() {
    printf 'exec-detector: %s\n' "$*" >&2
    exit 1
}

[ "$#" -ge 1 ] || fail "no file to scan: its path must be the last argument"
for last in "$@"; do :; done
file=$last

# The scan result JSON on stdin is not needed: read and discard it.
cat >/dev/null

[ -f "$file" ] || fail "not a regular file: $file"
[ -r "$file" ] || fail "cannot read: $file"

# The first 8 bytes as lowercase hex, no spaces: "7f454c46...".
magic=$(head -c 8 -- "$file" | od -An -v -tx1 | tr -d ' \n') || fail "cannot read: $file"

threat=""
case $magic in
    7f454c46*) threat="Executable.ELF" ;;
    4d5a*) threat="Executable.PE" ;;
    feedface* | feedfacf* | cefaedfe* | cffaedfe*) threat="Executable.MachO" ;;
    cafebabe*)
        # Universal (fat) Mach-O, or a Java class file, which has the same magic: a fat
        # binary's next word is its (small) number of architectures, a class file's is its
        # version (45 or more).
        count=$(printf '%d' "0x$(printf '%s' "$magic" | cut -c9-16)" 2>/dev/null) || count=0
        if [ -n "$count" ] && [ "$count" -gt 0 ] && [ "$count" -lt 45 ]; then
            threat="Executable.MachO.Universal"
        fi
        ;;
    2321*) threat="Script.Shebang" ;;
esac

if [ -n "$threat" ]; then
    result=2
else
    result=0
fi

printf '{\n  "def_time": %s,\n  "scan_result_i": %s,\n  "threat_found": "%s"\n}' \
    "$DEF_TIME" "$result" "$threat"
