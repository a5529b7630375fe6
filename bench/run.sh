#!/usr/bin/env bash
# bench/run.sh: measure Tern against smtp-sink and Postfix on loopback, in one run.
#
#   1. smtp-sink (accepts and forgets: the ceiling of the loopback + client setup),
#   2. durable Tern (`tern serve`, fsync before "250"), with its CPU time and peak RSS,
#   3. a private Postfix instance (fsync per message, then discarded),
# each driven by Postfix's smtp-source and by `tern bench` with the same load.
# Prints a markdown table on stdout; progress and logs go to stderr. See bench/README.md.
# Helpers shared with bench/outbound.sh (cleanup, ports, /proc, Postfix) are in bench/lib.sh.
#
# Environment: SESSIONS (50), MESSAGES (20000), SIZE (4096), FROM, TO,
#   TERN_BIN (use this binary instead of building), TERN_BENCH_FLAGS (extra `tern bench` flags,
#   e.g. --pipelining), SKIP_INSTALL=1 (do not apt-get), KEEP_WORK=1 (keep logs and data).
set -euo pipefail

SESSIONS=${SESSIONS:-50}
MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-4096}
FROM=${FROM:-bench@tern.test}
TO=${TO:-sink@tern.test}
TERN_BENCH_FLAGS=${TERN_BENCH_FLAGS:-}
TEST_DOMAIN=${TO##*@}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench

# Results, keyed "server/client".
declare -A RATE NOTE CPU RSS
FAILURES=0

record_failure() {
  RATE[$1]="failed"
  NOTE[$1]=$(one_line "$2")
  FAILURES=$((FAILURES + 1))
  log "FAILED $1: $2"
}

# Drives 127.0.0.1:$2 with smtp-source; records the rate under "$1/smtp-source".
run_smtp_source() {
  local server=$1 port=$2 key="$1/smtp-source" err="$WORK/$1.smtp-source.err" start end
  log "$key: smtp-source -d -l $SIZE -s $SESSIONS -m $MESSAGES"
  start=$(now_ns)
  if ! run_child /dev/null "$err" \
    smtp-source -d -l "$SIZE" -s "$SESSIONS" -m "$MESSAGES" -f "$FROM" -t "$TO" "127.0.0.1:$port"; then
    record_failure "$key" "$(head -c 300 "$err")"
    return 0
  fi
  end=$(now_ns)
  # smtp-source is silent when every reply was the expected one; any line means trouble.
  if [[ -s $err ]]; then
    record_failure "$key" "$(head -c 300 "$err")"
    return 0
  fi
  RATE[$key]=$(awk -v n="$MESSAGES" -v ns="$((end - start))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  log "$key: ${RATE[$key]} msg/s"
}

# Drives 127.0.0.1:$2 with `tern bench`; records the rate under "$1/tern bench".
run_tern_bench() {
  local server=$1 port=$2 key="$1/tern bench" out="$WORK/$1.tern-bench.json" err ok failed
  err="$WORK/$1.tern-bench.err"
  if [[ -z ${TERN:-} ]]; then
    record_failure "$key" "no tern binary"
    return 0
  fi
  log "$key: tern bench --sessions $SESSIONS --messages $MESSAGES --size $SIZE $TERN_BENCH_FLAGS"
  # shellcheck disable=SC2086 # TERN_BENCH_FLAGS is a list of flags.
  if ! run_child "$out" "$err" "$TERN" bench --server "127.0.0.1:$port" --sessions "$SESSIONS" \
    --messages "$MESSAGES" --size "$SIZE" --from "$FROM" --to "$TO" --json $TERN_BENCH_FLAGS; then
    record_failure "$key" "$(head -c 300 "$err") $(head -c 300 "$out")"
    return 0
  fi
  ok=$(sed -n 's/.*"messages_ok":\([0-9]*\).*/\1/p' "$out")
  failed=$(sed -n 's/.*"messages_failed":\([0-9]*\).*/\1/p' "$out")
  RATE[$key]=$(sed -n 's/.*"messages_per_sec":\([0-9.]*\).*/\1/p' "$out" | awk '{ printf "%.0f", $1 }')
  if [[ $ok != "$MESSAGES" ]]; then
    NOTE[$key]=$(one_line "$ok ok, $failed failed: $(sed -n 's/.*"errors":\(.*\)}$/\1/p' "$out" | head -c 200)")
    FAILURES=$((FAILURES + 1))
    log "WARNING $key: ${NOTE[$key]}"
  fi
  log "$key: ${RATE[$key]} msg/s ($(sed -n 's/.*"latency_ms":\({[^}]*}\).*/\1/p' "$out"))"
}

# ---------------------------------------------------------------------------------------------
# The three servers
# ---------------------------------------------------------------------------------------------

bench_smtp_sink() {
  local port pid
  port=$(pick_port)
  start_smtp_sink "$port" "$WORK/smtp-sink.out"
  pid=$SPAWNED
  run_smtp_source smtp-sink "$port"
  run_tern_bench smtp-sink "$port"
  stop_child "$pid"
  log "smtp-sink saw mesg=$(sink_counter "$WORK/smtp-sink.out" mesg) in total"
}

bench_tern() {
  local port pid data c0 c1 c2 key
  if [[ -z ${TERN:-} ]]; then
    record_failure "Tern (durable)/smtp-source" "no tern binary"
    record_failure "Tern (durable)/tern bench" "no tern binary"
    return 0
  fi
  port=$(pick_port)
  data=$(mktemp -d "$WORK/tern-data.XXXXXX")
  log "tern serve on 127.0.0.1:$port, data in $data"
  spawn "$WORK/tern.out" "$WORK/tern.log" \
    "$TERN" serve --smtp "127.0.0.1:$port" --http 127.0.0.1:0 --data "$data" --hostname bench.tern.test
  pid=$SPAWNED
  if ! wait_port "$port" "$pid"; then
    record_failure "Tern (durable)/smtp-source" "tern serve did not start: $(tail -c 300 "$WORK/tern.log")"
    record_failure "Tern (durable)/tern bench" "tern serve did not start"
    stop_child "$pid"
    return 0
  fi
  c0=$(cpu_ms "$pid")
  run_smtp_source "Tern (durable)" "$port"
  c1=$(cpu_ms "$pid")
  RSS["Tern (durable)/smtp-source"]=$(peak_rss_kb "$pid")
  run_tern_bench "Tern (durable)" "$port"
  c2=$(cpu_ms "$pid")
  RSS["Tern (durable)/tern bench"]=$(peak_rss_kb "$pid")
  key="Tern (durable)"
  CPU["$key/smtp-source"]=$(divide "$((c1 - c0))" "$MESSAGES" 3)
  CPU["$key/tern bench"]=$(divide "$((c2 - c1))" "$MESSAGES" 3)
  kill -0 "$pid" 2>/dev/null || log "tern serve exited during the run: $(tail -c 300 "$WORK/tern.log")"
  stop_child "$pid"
  # Cross-check the clients against the store (best effort: `tern messages` may change).
  local stored
  if stored=$("$TERN" messages --data "$data" list --limit "$((2 * MESSAGES + 100))" 2>/dev/null | wc -l); then
    log "tern stored $stored messages in total (expected $((2 * MESSAGES)) if both runs succeeded)"
  fi
}

bench_postfix() {
  local port sent
  port=$(pick_port)
  # Accepts mail for $TEST_DOMAIN, queues it (fsync'd, as always) and discards it.
  if ! postfix_start "$port" "relay_domains = $TEST_DOMAIN
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_transport = discard
relay_transport = discard
local_transport = discard"; then
    record_failure "Postfix/smtp-source" "$POSTFIX_ERROR"
    record_failure "Postfix/tern bench" "postfix did not start"
    return 0
  fi
  run_smtp_source Postfix "$port"
  wait_postfix_queue_empty "$POSTFIX_CONF"
  run_tern_bench Postfix "$port"
  wait_postfix_queue_empty "$POSTFIX_CONF"
  postfix_stop
  restore_main_cf
  sent=$(grep -c 'status=sent' "$WORK/postfix/maillog" 2>/dev/null || true)
  log "postfix discarded ${sent:-0} messages in total"
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

ratio() { divide "${RATE[$1]:-}" "${RATE[$2]:-}" 2; }

report() {
  local server client key rss
  echo "## SMTP throughput on loopback"
  echo
  echo "$SESSIONS sessions, $MESSAGES messages of $SIZE bytes per run, $(nproc) CPUs, $(date -u +%Y-%m-%d)."
  echo
  echo "| server | client | msgs/s | server CPU ms/msg | server peak RSS MiB | note |"
  echo "|---|---|---:|---:|---:|---|"
  for server in smtp-sink "Tern (durable)" Postfix; do
    for client in smtp-source "tern bench"; do
      key="$server/$client"
      rss=${RSS[$key]:-}
      [[ -n $rss ]] && rss=$(awk -v kb="$rss" 'BEGIN { printf "%.1f", kb / 1024 }')
      echo "| $server | $client | ${RATE[$key]:-n/a} | ${CPU[$key]:-} | $rss | ${NOTE[$key]:-} |"
    done
  done
  echo
  echo "| ratio | with smtp-source | with tern bench |"
  echo "|---|---:|---:|"
  echo "| durable Tern / smtp-sink | $(ratio "Tern (durable)/smtp-source" "smtp-sink/smtp-source") | $(ratio "Tern (durable)/tern bench" "smtp-sink/tern bench") |"
  echo "| durable Tern / Postfix | $(ratio "Tern (durable)/smtp-source" "Postfix/smtp-source") | $(ratio "Tern (durable)/tern bench" "Postfix/tern bench") |"
}

install_packages
build_tern
bench_smtp_sink
bench_tern
bench_postfix
report
if [[ $FAILURES -gt 0 ]]; then
  log "$FAILURES measurement(s) failed or were incomplete; see the notes above"
  exit 1
fi
