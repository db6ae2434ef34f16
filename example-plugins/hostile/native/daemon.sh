#!/bin/sh
# daemon.sh: a hostile native plugin. Leaves a daemon behind: a `sleep 1000` in a session of
# its own (`setsid`), so outside the plugin's process group, that keeps the host's stdout and
# stderr open. Once the daemon runs, its pid is in the file named by the first argument; then
# the plugin prints a valid clean verdict and exits 0, orphaning the daemon. The group kill
# cannot reach it: the host must find and kill it another way, and must not wait for it to
# close stdout.
PATH=/usr/local/bin:/usr/bin:/bin
export PATH

pidfile="$1"
setsid sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 1000' "$pidfile" </dev/null &
while [ ! -s "$pidfile" ]; do sleep 0.01; done
printf '{"def_time": 0, "scan_result_i": 0, "threat_found": ""}\n'
exit 0
