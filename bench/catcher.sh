#!/usr/bin/env bash
# bench/catcher.sh: the catcher's numbers, in one run on loopback.
#
#   1. What the full-text index costs ingest: `tern bench` (SESSIONS x MESSAGES x SIZE)
#      against this Tern and against the same source built with the `bench-without-index`
#      feature (stores everything but the index), ROUNDS alternating rounds, each server with
#      a fresh data directory; the median of the per-round ratios. With BASE_REV set, also
#      against Tern at that commit (101d5ed: the foundation, before inboxes, tags and search).
#   2. With CORPUS varied messages stored (random words, 200 senders, 50 inboxes), the API's
#      latency for the first page, paging and searches, and the wake-up delay of /api/v1/wait
#      after the SMTP 250 that committed the awaited message (bench/catcher.py).
#
#
# The million-message case: `CORPUS=1000000 CORPUS_STORE=/var/tmp/tern-1m ROUNDS=0
# bench/catcher.sh` loads the corpus once into CORPUS_STORE (~17 minutes on 2 cores: the
# Python client is the limit; ~5.6 GB) and keeps it; later runs with the same CORPUS_STORE
# time the API on it without loading again (a newer Tern migrates it first).
#
# Environment: SESSIONS (50) MESSAGES (20000) SIZE (4096) CORPUS (100000) ROUNDS (5, 0 for
#   no ingest rounds) BASE_REV (unset: no foundation rounds) CORPUS_STORE (unset: a fresh
#   store, removed afterwards).
# Prints a JSON report per step on stdout; progress on stderr.
set -euo pipefail

SESSIONS=${SESSIONS:-50}
MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-4096}
CORPUS=${CORPUS:-100000}
ROUNDS=${ROUNDS:-5}
BASE_REV=${BASE_REV:-}
CORPUS_STORE=${CORPUS_STORE:-}

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
  local port=$1 tries=${2:-200}
  for _ in $(seq "$tries"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# start BIN DATA [TRIES] -> sets SMTP_PORT HTTP_PORT SERVER_PID (TRIES x 50 ms to listen)
start() {
  local bin=$1 data=$2 tries=${3:-200}
  SMTP_PORT=$(free_port)
  HTTP_PORT=$(free_port)
  local extra=()
  if "$bin" serve --help | grep -q -- '--http'; then extra+=(--http "127.0.0.1:$HTTP_PORT"); fi
  # Keep every message: the catcher's default retention would prune the corpus to 50,000.
  if "$bin" serve --help | grep -q -- '--max-messages'; then extra+=(--max-messages 0); fi
  "$bin" serve --smtp "127.0.0.1:$SMTP_PORT" "${extra[@]}" --data "$data" >/dev/null 2>"$data.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SMTP_PORT" "$tries" || { log "server did not start: $(tail -c 300 "$data.log")"; exit 1; }
}

stop() { kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }

log "building this Tern (release), and the same without the index"
(cd "$REPO" && cargo build --release --ignore-rust-version -p tern >&2)
TERN="$TARGET/release/tern"
if [ "$ROUNDS" -gt 0 ]; then
  (cd "$REPO" && CARGO_TARGET_DIR="$TARGET/catcher-bench-unindexed" \
    cargo build --release --ignore-rust-version -p tern --features bench-without-index >&2)
fi
UNINDEXED="$TARGET/catcher-bench-unindexed/release/tern"

# ingest LABEL BIN -> one JSON line on stdout; sets RATE
ingest() {
  local label=$1 bin=$2
  start "$bin" "$WORK/data-$label"
  log "ingest: $label"
  local report
  report=$("$TERN" bench --server "127.0.0.1:$SMTP_PORT" --sessions "$SESSIONS" --messages "$MESSAGES" --size "$SIZE" --json)
  stop
  rm -rf "$WORK/data-$label"
  RATE=$(python3 -c "import json,sys; print(json.load(sys.stdin)['messages_per_sec'])" <<<"$report")
  python3 -c "import json,sys; r=json.load(sys.stdin); print(json.dumps({'ingest': '$label', 'messages_per_sec': r['messages_per_sec'], 'p99_ms': r['latency_ms']['p99'], 'failed': r['messages_failed']}))" <<<"$report"
}

if [ -n "$BASE_REV" ]; then
  log "building the baseline $BASE_REV (release, own target dir)"
  git -C "$REPO" worktree add --detach "$WORK/base" "$BASE_REV" >&2
  (cd "$WORK/base" && CARGO_TARGET_DIR="$TARGET/catcher-bench-base" \
    cargo build --release --ignore-rust-version -p tern >&2)
fi
# Rounds alternate between the builds: this machine's speed drifts between runs, so only
# ratios within a round compare.
RATIOS=()
BASE_RATIOS=()
for round in $(seq "$ROUNDS"); do
  ingest "without-index#$round" "$UNINDEXED"; without=$RATE
  ingest "with-index#$round" "$TERN"; with=$RATE
  RATIOS+=("$(python3 -c "print($with / $without)")")
  if [ -n "$BASE_REV" ]; then
    ingest "foundation@$BASE_REV#$round" "$TARGET/catcher-bench-base/release/tern"
    BASE_RATIOS+=("$(python3 -c "print($with / $RATE)")")
  fi
done
[ "$ROUNDS" -gt 0 ] && python3 - "${RATIOS[*]}" "${BASE_RATIOS[*]:-}" <<'PY'
import json, statistics, sys
ratios = [float(x) for x in sys.argv[1].split()]
base = [float(x) for x in sys.argv[2].split()] if len(sys.argv) > 2 and sys.argv[2] else []
report = {"index_cost": {"with_over_without_per_round": [round(r, 3) for r in ratios],
                         "median": round(statistics.median(ratios), 3)}}
if base:
    report["versus_foundation"] = {"per_round": [round(r, 3) for r in base],
                                   "median": round(statistics.median(base), 3)}
print(json.dumps(report))
PY

CORPUS_DATA=${CORPUS_STORE:-$WORK/data-corpus}
LOADED="$CORPUS_DATA/.bench-corpus-$CORPUS"
LOAD_FLAGS=()
if [ -f "$LOADED" ]; then
  log "reusing the corpus of $CORPUS messages in $CORPUS_DATA"
  LOAD_FLAGS+=(--skip-load)
fi
# Up to 10 minutes to listen: a kept store may need migrating first.
start "$TERN" "$CORPUS_DATA" 12000
log "loading $CORPUS varied messages (unless kept) and timing the API"
python3 "$REPO/bench/catcher.py" --smtp "127.0.0.1:$SMTP_PORT" --http "127.0.0.1:$HTTP_PORT" --messages "$CORPUS" "${LOAD_FLAGS[@]}"
log "store: $(du -sh "$CORPUS_DATA" | cut -f1), server peak RSS: $(grep VmHWM /proc/$SERVER_PID/status | awk '{print $2, $3}')"
stop
if [ -n "$CORPUS_STORE" ]; then touch "$LOADED"; fi
