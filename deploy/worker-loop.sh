#!/bin/sh
# A Prefect process worker that can be stopped or restarted without killing a render.
#
# A process worker runs each flow run as its child; stopping the worker (SIGTERM, Ctrl-C,
# `systemctl stop`, `docker stop`) terminates that child, so the render is lost mid-frame and
# must be retried. This loop runs the worker one poll at a time (`prefect worker start --run-once`
# takes the runs it may, waits until they end, and exits) and checks between polls whether to stop:
#
#   deploy/worker-loop.sh [extra `prefect worker start` options]    # e.g. --name gpu-0
#   kill -TERM <pid of this script>      # or: touch "$PYTTI_WORKER_STOP_FILE"
#
# After SIGTERM (or SIGHUP) to this script, or once the stop file exists, it starts no new render,
# lets the running one finish, and exits 0. Send the signal to this script only, not to its process
# group: systemd `KillMode=mixed`, `docker stop` (which signals PID 1) and `kill PID` do that.
# Code updates take effect at the next poll, since every poll starts a fresh worker.
#
# Environment:
#   PYTTI_WORKER_POOL          work pool (default pytti-gpu)
#   PYTTI_WORKER_LIMIT         runs at once (default 1: one GPU)
#   PYTTI_WORKER_STOP_FILE     stop once this file exists (default: none); it is removed on exit
#   PYTTI_WORKER_IDLE_SECONDS  pause between polls (default 10)
set -u
pool=${PYTTI_WORKER_POOL:-pytti-gpu}
limit=${PYTTI_WORKER_LIMIT:-1}
stop_file=${PYTTI_WORKER_STOP_FILE:-}
idle=${PYTTI_WORKER_IDLE_SECONDS:-10}
stopping=0

# The trap runs once the current `prefect worker` has returned (the shell waits for its foreground
# command first), so the render in progress is never interrupted.
trap 'stopping=1; echo "pytti worker loop: stopping after the current render" >&2' TERM HUP

should_stop() {
    [ "$stopping" = 1 ] || { [ -n "$stop_file" ] && [ -e "$stop_file" ]; }
}

while ! should_stop; do
    prefect worker start --pool "$pool" --limit "$limit" --run-once "$@" ||
        echo "pytti worker loop: prefect worker exited with status $?" >&2
    should_stop && break
    sleep "$idle" &
    wait $! 2>/dev/null   # a signal ends the pause at once
done
[ -n "$stop_file" ] && rm -f "$stop_file"
echo "pytti worker loop: stopped" >&2
exit 0
