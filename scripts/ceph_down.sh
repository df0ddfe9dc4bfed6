#!/usr/bin/env bash
# Stop the Ceph started by scripts/ceph_up.sh, by its pid files only (never by process name).
#
# Usage: scripts/ceph_down.sh [--purge]   (--purge also deletes the scratch dir)
# Env:   CEPH_DIR (default /tmp/barkpipe-ceph). Safe to run when nothing is running.
set -euo pipefail

CEPH_DIR=${CEPH_DIR:-/tmp/barkpipe-ceph}
RUN="$CEPH_DIR/run"

# stop NAME: SIGTERM, wait up to 15 s, then SIGKILL; the pid file goes either way.
stop() {
    local pidfile="$RUN/$1.pid" pid
    [[ -s "$pidfile" ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "ceph_down: $1 (pid $pid) ignored SIGTERM for 15s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
    echo "ceph_down: stopped $1 (pid $pid)" >&2
}

# Reverse start order: the gateway first, so it does not spin on a vanished OSD.
stop rgw
stop osd
stop mon

if [[ ${1:-} == --purge ]]; then
    rm -rf "$CEPH_DIR"
fi
