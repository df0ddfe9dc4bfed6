#!/usr/bin/env bash
# Start a throwaway single-node Ceph (mon + memstore OSD + radosgw) on 127.0.0.1 for S3 tests.
#
# Usage: scripts/ceph_up.sh            (prints `export BARKPIPE_CEPH_ENDPOINT=...` on success)
# Env:   CEPH_DIR (scratch dir, default /tmp/barkpipe-ceph), CEPH_RGW_PORT (default 7480),
#        CEPH_S3_KEY / CEPH_S3_SECRET (default testing/testing).
# Idempotent: if this scratch dir's radosgw already answers, it only prints the endpoint.
# Needs the Debian packages radosgw, ceph-mon and ceph-osd (installed by .ci/run, not here).
# Data lives in RAM (memstore), so a restart starts from an empty cluster.
set -euo pipefail

CEPH_DIR=${CEPH_DIR:-/tmp/barkpipe-ceph}
RGW_PORT=${CEPH_RGW_PORT:-7480}
S3_KEY=${CEPH_S3_KEY:-testing}
S3_SECRET=${CEPH_S3_SECRET:-testing}
ENDPOINT="http://127.0.0.1:${RGW_PORT}"
CONF="$CEPH_DIR/ceph.conf"
RUN="$CEPH_DIR/run"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "ceph_up: $*" >&2; }
die() { log "ERROR: $*"; log "logs: $CEPH_DIR/log/"; exit 1; }

for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
    command -v "$bin" >/dev/null \
        || die "'$bin' not found; install it with: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd"
done

# HTTP status of a GET, or 000 when nothing answers. `|| true`: under set -e a refused
# connection would otherwise end the script.
http_code() {
    if command -v curl >/dev/null; then
        curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" || true
    else
        python3 - "$1" <<'EOF' || echo 000
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
EOF
    fi
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll twice a second, fail with a clear message.
wait_for() {
    local what=$1 limit=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${limit}s waiting for $what"
        sleep 0.5
    done
}

pid_alive() { [[ -s "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
rgw_ready() { [[ $(http_code "$ENDPOINT/") == 200 ]]; }
ceph_cli() { timeout 20 ceph -c "$CONF" --connect-timeout 10 "$@"; }
osd_up() { ceph_cli osd dump 2>/dev/null | grep -q '^osd\.[0-9]* up'; }

if pid_alive mon && pid_alive osd && pid_alive rgw && rgw_ready; then
    log "already running in $CEPH_DIR"
    echo "export BARKPIPE_CEPH_ENDPOINT=$ENDPOINT"
    exit 0
fi
# Half-started or stale from an earlier run: stop what is left, then start clean
# (mon --mkfs needs an empty data dir).
CEPH_DIR="$CEPH_DIR" "$HERE/ceph_down.sh" >/dev/null 2>&1 || true
[[ $(http_code "$ENDPOINT/") == 000 ]] || die "port $RGW_PORT is taken by another server; set CEPH_RGW_PORT"

rm -rf "$CEPH_DIR"
mkdir -p "$CEPH_DIR"/{run,log,mon,osd,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
MON_ADDR="[v2:127.0.0.1:3300,v1:127.0.0.1:6789]"

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = $MON_ADDR
public addr = 127.0.0.1
# No cephx: a loopback test cluster with no secrets to manage.
auth cluster required = none
auth service required = none
auth client required = none
# auth=none cannot give the default "secure" messenger mode; without crc radosgw loops on
# "get_initial_auth_request returned -13".
ms mon client mode = crc
ms client mode = crc
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = $RUN
admin socket = $RUN/\$name.asok
log file = $CEPH_DIR/log/\$name.log
mon data = $CEPH_DIR/mon/\$cluster-\$id
osd data = $CEPH_DIR/osd/\$cluster-\$id
keyring = $CEPH_DIR/keyring

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $CEPH_DIR/rgw
EOF
: >"$CEPH_DIR/keyring"

start=$SECONDS
monmaptool --create --addv a "$MON_ADDR" --fsid "$FSID" "$CEPH_DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap"
ceph-mon -c "$CONF" -i a --pid-file "$RUN/mon.pid"
wait_for "the monitor to answer" 60 ceph_cli mon stat

OSD_ID=$(ceph_cli osd create)
mkdir -p "$CEPH_DIR/osd/ceph-$OSD_ID"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs >/dev/null 2>&1 || die "ceph-osd --mkfs failed"
ceph-osd -c "$CONF" -i "$OSD_ID" --pid-file "$RUN/osd.pid" 2>>"$CEPH_DIR/log/osd-start.log"
wait_for "osd.$OSD_ID to be up" 60 osd_up

radosgw -c "$CONF" -n client.rgw.a --pid-file "$RUN/rgw.pid"
wait_for "radosgw on $ENDPOINT" 60 rgw_ready
timeout 60 radosgw-admin -c "$CONF" user create --uid=testing --display-name=testing \
    --access-key="$S3_KEY" --secret="$S3_SECRET" >/dev/null || die "radosgw-admin user create failed"

log "up in $((SECONDS - start))s: $ENDPOINT (key $S3_KEY), scratch dir $CEPH_DIR"
echo "export BARKPIPE_CEPH_ENDPOINT=$ENDPOINT"
