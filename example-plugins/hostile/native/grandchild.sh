#!/bin/sh
# grandchild.sh: a hostile native plugin. Starts a background grandchild (`sleep 1000`) that
# inherits stdout, prints the grandchild's pid alone on a line on stderr, then sleeps past any
# deadline itself. The host must kill the whole process group on timeout, grandchild
# included, and must not wait for the grandchild's copy of stdout to close.
PATH=/usr/local/bin:/usr/bin:/bin
export PATH

sleep 1000 &
printf '%s\n' "$!" >&2
sleep 1000
