#!/usr/bin/env bash
# bench/clients.sh: many clients at once against one Tern (the catcher, release build).
#
#   1. Idle: IDLE connections are opened (from 250 loopback source addresses) and held for
#      HOLD_SECS, each greeted and then silent; Tern's RSS, CPU time and open descriptors are
#      sampled every TICK_SECS. Goal: under 200 MB, and no growth while they idle.
#   2. Slowloris: SLOW clients each send one byte of an endless EHLO line every SLOW_INTERVAL
#      seconds, while a normal client sends MESSAGES messages one after another; its latency
#      (connect to the 250 after DATA) is compared with the same run before the attack.
# The file limit is raised for Tern and the clients (ulimit -n). Prints a markdown report on
# stdout (written by bench/clients.py); progress on stderr. See bench/README.md.
#
# Environment: IDLE (10000), HOLD_SECS (60), TICK_SECS (10), SLOW (500), SLOW_INTERVAL (3),
#   MESSAGES (200), TERN_BIN, KEEP_WORK=1.
set -euo pipefail

IDLE=${IDLE:-10000}
HOLD_SECS=${HOLD_SECS:-60}
TICK_SECS=${TICK_SECS:-10}
SLOW=${SLOW:-500}
SLOW_INTERVAL=${SLOW_INTERVAL:-3}
MESSAGES=${MESSAGES:-200}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init clients

files=$((IDLE + SLOW + 4096))
ulimit -n "$files" 2>/dev/null || die "cannot raise the file limit to $files (root, or lower IDLE)"

build_tern
[[ -n $TERN ]] || die "no tern binary"

port=$(pick_port)
http=$(pick_port)
cat >"$WORK/tern.toml" <<EOF
data_dir = "$WORK/data"
[log]
level = "warn"
[smtp]
listen = ["127.0.0.1:$port"]
max_connections = $((IDLE + SLOW + 100))
idle_timeout_secs = $((HOLD_SECS * 4 + 600))
[http]
listen = "127.0.0.1:$http"
EOF
serve_tern "$WORK/tern.toml" "$port"
tern_pid=$SERVED_PID
log "tern $tern_pid on 127.0.0.1:$port; $IDLE idle clients for ${HOLD_SECS}s, then $SLOW slow ones"

echo "# Many clients ($(nproc) cores, $(date -u +%Y-%m-%d))"
echo
python3 "$REPO/bench/clients.py" --port "$port" --pid "$tern_pid" --idle "$IDLE" \
  --hold "$HOLD_SECS" --tick "$TICK_SECS" --slow "$SLOW" --slow-interval "$SLOW_INTERVAL" \
  --messages "$MESSAGES"
kill -0 "$tern_pid" 2>/dev/null || die "tern died during the run: $(tail -n 5 "$WORK/tern.err")"
echo "Tern's peak RSS over the run: $(($(peak_rss_kb "$tern_pid") / 1024)) MiB."
