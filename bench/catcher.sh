#!/usr/bin/env bash
# bench/catcher.sh: the catcher's numbers, in one run on loopback.
#
#   1. Ingest with and without the full-text index: `tern bench` (SESSIONS x MESSAGES x SIZE)
#      against this Tern and against Tern at BASE_REV (before the search index existed), each
#      with a fresh data directory.
#   2. With CORPUS varied messages stored (random words, 200 senders, 50 inboxes), the API's
#      latency for the first page, paging and searches, and the wake-up delay of /api/v1/wait
#      after the SMTP 250 that committed the awaited message (bench/catcher.py).
#
# Environment: SESSIONS (50) MESSAGES (20000) SIZE (4096) CORPUS (100000)
#   BASE_REV (101d5ed: the foundation, no search index) SKIP_BASE=1 (skip the baseline build).
# Prints a JSON report per step on stdout; progress on stderr.
set -euo pipefail

SESSIONS=${SESSIONS:-50}
MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-4096}
CORPUS=${CORPUS:-100000}
BASE_REV=${BASE_REV:-101d5ed}
SKIP_BASE=${SKIP_BASE:-0}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/tern-catcher-bench.XXXXXX)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
PIDS=()

log() { printf '[catcher-bench] %s\n' "$*" >&2; }
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  if [ -d "$WORK/base" ]; then git -C "$REPO" worktree remove --force "$WORK/base" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  local port=$1
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# start BIN DATA -> sets SMTP_PORT HTTP_PORT SERVER_PID
start() {
  local bin=$1 data=$2
  SMTP_PORT=$(free_port)
  HTTP_PORT=$(free_port)
  local extra=()
  if "$bin" serve --help | grep -q -- '--http'; then extra+=(--http "127.0.0.1:$HTTP_PORT"); fi
  # Keep every message: the catcher's default retention would prune the corpus to 50,000.
  if "$bin" serve --help | grep -q -- '--max-messages'; then extra+=(--max-messages 0); fi
  "$bin" serve --smtp "127.0.0.1:$SMTP_PORT" "${extra[@]}" --data "$data" >/dev/null 2>"$data.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SMTP_PORT" || { log "server did not start: $(tail -c 300 "$data.log")"; exit 1; }
}

stop() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }

log "building this Tern (release)"
(cd "$REPO" && cargo build --release -p tern >&2)
TERN="$TARGET/release/tern"

ingest() {
  local label=$1 bin=$2
  start "$bin" "$WORK/data-$label"
  log "ingest: $label"
  "$TERN" bench --server "127.0.0.1:$SMTP_PORT" --sessions "$SESSIONS" --messages "$MESSAGES" --size "$SIZE" --json \
    | python3 -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'ingest': '$label', 'messages_per_sec': r['messages_per_sec'], 'p99_ms': r['latency_ms']['p99'], 'failed': r['messages_failed']}))"
  stop
}

# Runs alternate between the two builds (this machine's speed drifts between runs).
if [ "$SKIP_BASE" != 1 ]; then
  log "building the baseline $BASE_REV (release, own target dir)"
  git -C "$REPO" worktree add --detach "$WORK/base" "$BASE_REV" >&2
  (cd "$WORK/base" && CARGO_TARGET_DIR="$TARGET/catcher-bench-base" cargo build --release -p tern >&2)
fi
for round in 1 2 3; do
  if [ "$SKIP_BASE" != 1 ]; then
    ingest "without-index@$BASE_REV#$round" "$TARGET/catcher-bench-base/release/tern"
  fi
  ingest "with-index#$round" "$TERN"
done

start "$TERN" "$WORK/data-corpus"
log "loading $CORPUS varied messages and timing the API"
python3 "$REPO/bench/catcher.py" --smtp "127.0.0.1:$SMTP_PORT" --http "127.0.0.1:$HTTP_PORT" --messages "$CORPUS"
log "store: $(du -sh "$WORK/data-corpus" | cut -f1), server peak RSS: $(grep VmHWM /proc/$SERVER_PID/status | awk '{print $2, $3}')"
stop
