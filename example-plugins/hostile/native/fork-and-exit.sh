#!/bin/sh
# fork-and-exit.sh: a hostile native plugin. Prints a valid clean verdict and exits 0, but
# leaves a background grandchild (`sleep 1000`) holding stdout (and stderr) open; its pid is
# printed alone on a line on stderr. The host must take the verdict when the plugin exits
# rather than wait for end-of-file on stdout, and must clean up the grandchild.
PATH=/usr/local/bin:/usr/bin:/bin
export PATH

sleep 1000 &
printf '%s\n' "$!" >&2
printf '{"def_time": 0, "scan_result_i": 0, "threat_found": ""}\n'
exit 0
