#!/usr/bin/env bash
# bench/outbound.sh: Tern's outbound delivery against Postfix's, on loopback, in one run.
#
#   1. Flush: each MTA (Tern in MTA mode, then a private Postfix instance) relays everything
#      to 127.0.0.1:SINK_PORT while nothing listens there; MESSAGES messages are injected with
#      smtp-source and each is attempted once and deferred. Then smtp-sink starts on that port,
#      the queue is flushed (Tern: POST /api/v1/queue/retry {"All":true}; Postfix:
#      postqueue -f) and the time until smtp-sink has counted every message gives
#      deliveries/s, with the MTA's CPU time per message, memory and smtp-sink's session
#      count (connection reuse). Both use at most CONCURRENCY connections to the sink and
#      PER_CONNECTION messages per connection. ROUNDS rounds each; the report gives medians.
#   2. Stream: with smtp-sink listening, STREAM messages are submitted one after another over
#      one smtp-source session, each due (and relayed) as it arrives; the report gives
#      smtp-sink's sessions per message once the queue is empty and connections have closed
#      (connection reuse for mail that falls due while a connection is open).
#   3. Idle: a fresh Tern holds IDLE_ENTRIES deferred entries (next retry in an hour) and is
#      watched for IDLE_SECS: CPU time, RSS and the store's size on disk.
# Prints a markdown report on stdout; progress and logs go to stderr. See bench/README.md.
#
# Environment: MESSAGES (10000), ROUNDS (3), SIZE (4096), SESSIONS (20: smtp-source's
#   injecting sessions), CONCURRENCY (20), PER_CONNECTION (100), IDLE_ENTRIES (100000),
#   IDLE_SIZE (1024), IDLE_SECS (60), SKIP_IDLE=1, FLUSH_TIMEOUT (300 s), FROM, TO, TERN_BIN,
#   SKIP_INSTALL=1, KEEP_WORK=1, STREAM (500; 0 skips the stream), STREAM_ONLY=1 (only the
#   stream, no flush or idle). RUST_LOG, when set, is Tern's log filter (its logs are in the
#   work directory, kept with KEEP_WORK=1 or when a measurement failed).
set -euo pipefail

MESSAGES=${MESSAGES:-10000}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-20}
CONCURRENCY=${CONCURRENCY:-20}
PER_CONNECTION=${PER_CONNECTION:-100}
IDLE_ENTRIES=${IDLE_ENTRIES:-100000}
IDLE_SIZE=${IDLE_SIZE:-1024}
IDLE_SECS=${IDLE_SECS:-60}
SKIP_IDLE=${SKIP_IDLE:-0}
FLUSH_TIMEOUT=${FLUSH_TIMEOUT:-300}
STREAM=${STREAM:-500}
STREAM_ONLY=${STREAM_ONLY:-0}
FROM=${FROM:-bench@tern.test}
TO=${TO:-sink@sink.test}
# The MTAs' own domain (the sender's); the recipients' domain is relayed.
TEST_DOMAIN=${FROM##*@}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init outbound

# Results, keyed by MTA ("Tern", "Postfix"); failures also under "idle".
# Per round, space-separated: deliveries/s, flush seconds, CPU ms per message, memory KiB,
# smtp-sink sessions, smtp-sink CPU %; then their medians.
declare -A R_RATE R_SECS R_CPU R_MEM R_SESS R_SINK_CPU NOTE
# The stream's smtp-sink sessions, by MTA.
declare -A STREAM_SESS
declare -A RATE SECS CPU MEM SESS SINK_CPU
FAILURES=0

record_failure() {
  NOTE[$1]=$(one_line "${NOTE[$1]:-}${NOTE[$1]:+; }$2")
  FAILURES=$((FAILURES + 1))
  log "FAILED $1: $2"
}

# Injects $2 messages of $3 bytes into 127.0.0.1:$1 (relayed: FROM to TO) with smtp-source.
# Fails (with the reason on stderr in $WORK/inject.err) when any reply was not the expected one.
inject() {
  local port=$1 n=$2 size=$3 err="$WORK/inject.err" start ms
  log "smtp-source -d -s $SESSIONS -l $size -m $n into 127.0.0.1:$port"
  start=$(now_ns)
  run_child /dev/null "$err" smtp-source -d -s "$SESSIONS" -l "$size" -m "$n" -f "$FROM" -t "$TO" \
    "127.0.0.1:$port" || return 1
  # smtp-source is silent when every reply was the expected one; any line means trouble.
  [[ ! -s $err ]] || return 1
  ms=$((($(now_ns) - start) / 1000000))
  log "injected $n messages in $ms ms: $(divide "$((n * 1000))" "$ms" 0) msg/s"
}

# The sum of the peak RSS (VmHWM) of PIDs "$@" in KiB: an upper bound of what the group used
# at its peak (shared pages count once per process, and the peaks need not coincide).
sum_peak_rss_kb() {
  local pid total=0 kb
  for pid in "$@"; do
    kb=$(peak_rss_kb "$pid" 2>/dev/null) || continue
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# The sum of the proportional set sizes (Pss: shared pages divided among their sharers) of
# PIDs "$@" in KiB: what the group uses now.
sum_pss_kb() {
  local pid
  for pid in "$@"; do awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true; done |
    awk '{ s += $1 } END { printf "%d", s }'
}

# Resets the peak RSS (VmHWM) of PIDs "$@" to their current RSS (Linux; best effort).
reset_peak_rss() {
  local pid
  for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

# Process $1 and its live descendants.
process_tree() {
  local -A children=()
  local f stat fields queue=("$1") pid kid
  for f in /proc/[0-9]*/stat; do
    { read -r stat <"$f"; } 2>/dev/null || continue
    read -r -a fields <<<"${stat##*) }"
    children[${fields[1]}]+=" ${stat%% *}"
  done
  while ((${#queue[@]})); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    echo "$pid"
    for kid in ${children[$pid]:-}; do queue+=("$kid"); done
  done
}

# CPU ms of process $1's whole tree: every live process's own time plus what they reaped.
tree_cpu_ms() {
  local pid total=0 ms
  for pid in $(process_tree "$1"); do
    ms=$(cpu_ms "$pid" 2>/dev/null) || continue
    total=$((total + ms))
  done
  echo "$total"
}

# Waits until smtp-sink (counters in $1, PID $2) has counted $3 messages; fails when it has
# not within FLUSH_TIMEOUT seconds or when the count stalls for 60 s.
wait_sink_messages() {
  local out=$1 pid=$2 want=$3 deadline last=-1 seen stalled_since=$SECONDS
  deadline=$((SECONDS + FLUSH_TIMEOUT))
  while :; do
    seen=$(sink_counter "$out" mesg)
    ((seen >= want)) && return 0
    kill -0 "$pid" 2>/dev/null || { log "smtp-sink died"; return 1; }
    if ((seen != last)); then
      last=$seen
      stalled_since=$SECONDS
    fi
    if ((SECONDS >= deadline || SECONDS - stalled_since >= 60)); then
      log "smtp-sink counted $seen of $want messages"
      return 1
    fi
    sleep 0.05
  done
}

# smtp-sink's (PID $1) CPU use since it had used $2 ms, over the last $3 ns, in % of one CPU.
sink_cpu_pct() { divide "$((($(cpu_ms "$1") - $2) * 100))" "$(($3 / 1000000))" 0; }

# ---------------------------------------------------------------------------------------------
# Tern
# ---------------------------------------------------------------------------------------------

TERN_PID=""
TERN_HTTP=""
TERN_LOG=""

# Starts Tern in MTA mode (logs in $WORK/$1.log, data in $WORK/$1-data) with an mx listener on
# 127.0.0.1:$2, relaying everything to 127.0.0.1:$3 and retrying after an hour. Sets TERN_PID
# TERN_HTTP (the API's port) and TERN_LOG.
start_tern() {
  local name=$1 port=$2 relay=$3 conf="$WORK/$1.toml" data="$WORK/$1-data"
  TERN_HTTP=$(pick_port)
  TERN_LOG="$WORK/$name.log"
  mkdir -p "$data"
  cat >"$conf" <<EOF
hostname = "mta.$TEST_DOMAIN"
data_dir = "$data"
mode = "mta"

[log]
level = "info"

[http]
listen = "127.0.0.1:$TERN_HTTP"

[retention]
# Queued mail is never pruned anyway; keep everything so the counts are plain.
max_messages = 0

[[listener]]
address = "127.0.0.1:$port"
role = "mx"

[relay]
local_domains = ["$TEST_DOMAIN"]
trusted_networks = ["127.0.0.0/8"]

[limits]
# smtp-source keeps its sessions open for the whole load.
max_connections_per_ip = 10000
max_connection_rate_per_minute = 1000000
max_messages_per_connection = 1000000000

[outbound]
relay_host = "127.0.0.1:$relay"
tls = "off"
connect_timeout_secs = 10
max_connections = 100
max_per_destination = $CONCURRENCY
messages_per_connection = $PER_CONNECTION

[queue]
# Only the explicit retry delivers during the run.
retry_first_secs = 3600
retry_max_secs = 3600
EOF
  log "tern serve --config $conf (mx on 127.0.0.1:$port, API on 127.0.0.1:$TERN_HTTP)"
  spawn "$WORK/$name.out" "$TERN_LOG" "$TERN" serve --config "$conf"
  TERN_PID=$SPAWNED
  wait_port "$port" "$TERN_PID" && wait_port "$TERN_HTTP" "$TERN_PID"
}

# GET (or, with $2, POST $2 as JSON to) Tern's API path $1.
tern_api() {
  if [[ -n ${2:-} ]]; then
    curl -sSf --max-time 60 -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$TERN_HTTP$1"
  else
    curl -sSf --max-time 60 "http://127.0.0.1:$TERN_HTTP$1"
  fi
}

# A counter from Tern's /metrics, 0 while it has never been incremented.
tern_metric() {
  tern_api /metrics | awk -v m="$1" '$1 == m { v = $2 } END { printf "%d", v + 0 }'
}

# The queue's entry count ("Total" of GET /api/v1/queue).
tern_queue_total() {
  tern_api '/api/v1/queue?limit=1' | sed -n 's/.*"Total":\([0-9]*\).*/\1/p'
}

# Entries never attempted, counted over every page of the queue API; prints "entries unattempted".
tern_queue_attempts() {
  local start=0 total=1 page unattempted=0 n
  while ((start < total)); do
    page=$(tern_api "/api/v1/queue?start=$start&limit=10000") || return 1
    total=$(sed -n 's/.*"Total":\([0-9]*\).*/\1/p' <<<"$page")
    n=$(grep -o '"Attempts":0[,}]' <<<"$page" | wc -l)
    unattempted=$((unattempted + n))
    start=$((start + 10000))
  done
  echo "$total $unattempted"
}

# Waits until Tern's deferral counter reaches $1 and the queue API shows $2 entries, none of
# them never attempted: at most $3 seconds.
wait_tern_deferred() {
  local want=$1 entries=$2 deadline=$((SECONDS + $3)) deferred counts
  while :; do
    deferred=$(tern_metric tern_outbound_deferred_total) || deferred=0
    ((deferred >= want)) && break
    if ((SECONDS >= deadline)) || ! kill -0 "$TERN_PID" 2>/dev/null; then
      log "tern deferred $deferred of $want entries: $(tail -c 300 "$TERN_LOG" 2>/dev/null)"
      return 1
    fi
    sleep 0.5
  done
  counts=$(tern_queue_attempts) || return 1
  log "tern: $deferred deferrals so far; queue entries / never attempted: $counts"
  [[ $counts == "$entries 0" ]]
}

# The hooks of flush_round for Tern (started by flush_tern).
tern_deferred() { wait_tern_deferred $(($1 * MESSAGES)) "$MESSAGES" $((60 + MESSAGES / 100)); }
tern_reset_peak() { reset_peak_rss "$TERN_PID"; }
tern_cpu() { cpu_ms "$TERN_PID"; }
tern_trigger() { log "POST /api/v1/queue/retry {\"All\":true}: $(tern_api /api/v1/queue/retry '{"All":true}')"; }
tern_empty() {
  local total _
  for _ in $(seq 300); do
    total=$(tern_queue_total) || total=""
    [[ $total == 0 ]] && return 0
    sleep 0.2
  done
  record_failure Tern "queue still holds ${total:-?} entries after the flush"
  return 1
}
tern_memory() { peak_rss_kb "$TERN_PID"; }

# The hooks of flush_round for Postfix (started by flush_postfix; its master is POSTFIX_MASTER).
postfix_deferred() { wait_postfix_deferred "$MESSAGES" $((60 + MESSAGES / 100)); }
# shellcheck disable=SC2046 # a list of PIDs
postfix_reset_peak() { reset_peak_rss $(process_tree "$POSTFIX_MASTER"); }
postfix_cpu() { tree_cpu_ms "$POSTFIX_MASTER"; }
postfix_trigger() { postqueue -c "$POSTFIX_CONF" -f; }
postfix_empty() {
  local left _
  for _ in $(seq 300); do
    left=$(postfix_queue_files maildrop incoming active deferred)
    ((left == 0)) && return 0
    sleep 0.2
  done
  record_failure Postfix "$left messages still queued after the flush"
  return 1
}
postfix_memory() {
  local tree
  tree=$(process_tree "$POSTFIX_MASTER")
  # shellcheck disable=SC2086 # a list of PIDs
  log "postfix: Σ peak RSS of its $(wc -w <<<"$tree") processes $(sum_peak_rss_kb $tree) KiB"
  # shellcheck disable=SC2086 # a list of PIDs
  sum_pss_kb $tree
}

# Round $3 of MTA $1 ("Tern" or "Postfix", already running with its smtpd on 127.0.0.1:$2):
# inject MESSAGES, wait until each has been attempted and deferred, start smtp-sink, trigger
# the flush and time it until smtp-sink has counted them all; CPU runs until the queue is
# empty. Appends the round's numbers to the R_* tables; returns 1 when the round failed.
flush_round() {
  local mta=$1 port=$2 round=$3 hook sink_out="$WORK/$1.sink.$3.out" sink_pid c0 c1 s0 t0 t1 secs
  hook=${mta,,}
  if ! inject "$port" "$MESSAGES" "$SIZE"; then
    record_failure "$mta" "injection failed: $(head -c 300 "$WORK/inject.err")"
    return 1
  fi
  "${hook}_deferred" "$round" || { record_failure "$mta" "messages were not all deferred"; return 1; }
  start_smtp_sink "$SINK_PORT" "$sink_out"
  sink_pid=$SPAWNED
  "${hook}_reset_peak"
  s0=$(cpu_ms "$sink_pid")
  c0=$("${hook}_cpu")
  t0=$(now_ns)
  "${hook}_trigger"
  if ! wait_sink_messages "$sink_out" "$sink_pid" "$MESSAGES"; then
    record_failure "$mta" "round $round: smtp-sink counted $(sink_counter "$sink_out" mesg) of $MESSAGES"
    stop_child "$sink_pid"
    return 1
  fi
  t1=$(now_ns)
  R_SINK_CPU[$mta]+=" $(sink_cpu_pct "$sink_pid" "$s0" "$((t1 - t0))")"
  secs=$(divide "$((t1 - t0))" 1000000000 2)
  R_SECS[$mta]+=" $secs"
  R_RATE[$mta]+=" $(divide "$MESSAGES" "$secs" 0)"
  "${hook}_empty" || { stop_child "$sink_pid"; return 1; }
  c1=$("${hook}_cpu")
  R_CPU[$mta]+=" $(divide "$((c1 - c0))" "$MESSAGES" 3)"
  R_MEM[$mta]+=" $("${hook}_memory")"
  R_SESS[$mta]+=" $(sink_counter "$sink_out" sess)"
  stop_child "$sink_pid"
  log "$mta round $round: $MESSAGES deliveries in $secs s = ${R_RATE[$mta]##* }/s," \
    "$((c1 - c0)) ms CPU, memory ${R_MEM[$mta]##* } KiB, smtp-sink sessions ${R_SESS[$mta]##* }"
}

# ROUNDS rounds of MTA $1 on port $2; stops at the first failed one; then the stream.
flush_rounds() {
  local round
  if [[ $STREAM_ONLY != 1 ]]; then
    for ((round = 1; round <= ROUNDS; round++)); do
      flush_round "$1" "$2" "$round" || return 0
    done
  fi
  ((STREAM == 0)) || stream_round "$1" "$2"
}

# MTA $1 (smtpd on 127.0.0.1:$2) relays STREAM messages submitted one after another to a
# listening smtp-sink; records the sink's session count once every connection has closed.
stream_round() {
  local mta=$1 port=$2 hook sink_out="$WORK/$1.stream.out" sink_pid base err="$WORK/inject.err"
  hook=${mta,,}
  start_smtp_sink "$SINK_PORT" "$sink_out"
  sink_pid=$SPAWNED
  sleep 0.2
  # The readiness probe's session.
  base=$(sink_counter "$sink_out" sess)
  log "stream: smtp-source -d -s 1 -m $STREAM into 127.0.0.1:$port"
  if ! run_child /dev/null "$err" smtp-source -d -s 1 -l "$SIZE" -m "$STREAM" -f "$FROM" \
    -t "$TO" "127.0.0.1:$port" || [[ -s $err ]]; then
    record_failure "$mta" "stream injection failed: $(head -c 300 "$err")"
  elif ! wait_sink_messages "$sink_out" "$sink_pid" "$STREAM"; then
    record_failure "$mta" "stream: smtp-sink counted $(sink_counter "$sink_out" mesg) of $STREAM"
  elif "${hook}_empty"; then
    # Cached connections close after a second or two (Tern's linger, Postfix's cache time).
    sleep 3
    STREAM_SESS[$mta]=$(($(sink_counter "$sink_out" sess) - base))
    log "$mta stream: $STREAM messages over ${STREAM_SESS[$mta]} smtp-sink sessions"
  fi
  stop_child "$sink_pid"
}

flush_tern() {
  local port
  if [[ -z ${TERN:-} ]]; then
    record_failure Tern "no tern binary"
    return 0
  fi
  port=$(pick_port)
  if ! start_tern tern "$port" "$SINK_PORT"; then
    record_failure Tern "tern did not start: $(tail -c 300 "$TERN_LOG")"
    return 0
  fi
  flush_rounds Tern "$port"
  log "tern: $(grep -c ' WARN ' "$TERN_LOG" || true) warnings in its log (each refused connection is one)"
  stop_child "$TERN_PID"
}

# ---------------------------------------------------------------------------------------------
# Postfix
# ---------------------------------------------------------------------------------------------

# Queue files in the instance's queues named "$@".
postfix_queue_files() {
  local q dirs=()
  for q in "$@"; do dirs+=("$WORK/postfix/queue/$q"); done
  find "${dirs[@]}" -type f 2>/dev/null | wc -l
}

# Waits until $1 messages sit in the deferred queue and nothing else is queued: at most $2 s.
wait_postfix_deferred() {
  local want=$1 deadline=$((SECONDS + $2)) deferred others
  while :; do
    deferred=$(postfix_queue_files deferred)
    others=$(postfix_queue_files maildrop incoming active)
    ((deferred == want && others == 0)) && return 0
    if ((SECONDS >= deadline)); then
      log "postfix: $deferred deferred, $others elsewhere, of $want (see $WORK/postfix/maillog)"
      return 1
    fi
    sleep 0.5
  done
}

flush_postfix() {
  local port
  port=$(pick_port)
  # Relays everything from loopback to smtp-sink, as Tern does, without DNS or TLS, with the
  # same concurrency and connection reuse. Only the flush delivers: no retry within the hour.
  if ! postfix_start "$port" "smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtp_tls_security_level = none
default_destination_concurrency_limit = $CONCURRENCY
smtp_connection_cache_on_demand = yes
smtp_connection_cache_destinations = \$relayhost
smtp_connection_reuse_count_limit = $PER_CONNECTION
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s" "smtp            unix  -       -      n      -      -       smtp
relay           unix  -       -      n      -      -       smtp"; then
    record_failure Postfix "$POSTFIX_ERROR"
    return 0
  fi
  POSTFIX_MASTER=$(tr -d ' ' <"$WORK/postfix/queue/pid/master.pid")
  flush_rounds Postfix "$port"
  POSTFIX_PROCESSES=$(process_tree "$POSTFIX_MASTER" | wc -l)
  log "postfix: $(grep -c 'status=sent' "$WORK/postfix/maillog" || true) sent," \
    "$(grep -c 'status=deferred' "$WORK/postfix/maillog" || true) deferrals in its log"
  postfix_stop
  restore_main_cf
}

# ---------------------------------------------------------------------------------------------
# Idle overhead
# ---------------------------------------------------------------------------------------------

declare -A IDLE
idle_overhead() {
  local port dead pid c0 c prev samples=() i rounds
  if [[ -z ${TERN:-} ]]; then
    record_failure idle "no tern binary"
    return 0
  fi
  port=$(pick_port)
  dead=$(pick_port) # nothing listens there: every attempt is deferred
  if ! start_tern idle "$port" "$dead"; then
    record_failure idle "tern did not start: $(tail -c 300 "$TERN_LOG")"
    return 0
  fi
  pid=$TERN_PID
  if ! inject "$port" "$IDLE_ENTRIES" "$IDLE_SIZE"; then
    record_failure idle "injection failed: $(head -c 300 "$WORK/inject.err")"
    stop_child "$pid"
    return 0
  fi
  if ! wait_tern_deferred "$IDLE_ENTRIES" "$IDLE_ENTRIES" $((60 + IDLE_ENTRIES / 100)); then
    record_failure idle "entries were not all attempted and deferred"
    stop_child "$pid"
    return 0
  fi
  log "idle: watching tern for $IDLE_SECS s"
  c0=$(cpu_ms "$pid")
  prev=$c0
  rounds=$(((IDLE_SECS + 9) / 10))
  for ((i = 1; i <= rounds; i++)); do
    sleep $((i * 10 > IDLE_SECS ? IDLE_SECS - (i - 1) * 10 : 10))
    c=$(cpu_ms "$pid")
    samples+=("$((c - prev))")
    prev=$c
  done
  IDLE[cpu_ms]=$((prev - c0))
  IDLE[cpu_pct]=$(divide "$((prev - c0))" "$((IDLE_SECS * 10))" 2)
  IDLE[samples]=${samples[*]}
  IDLE[rss]=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  IDLE[hwm]=$(peak_rss_kb "$pid")
  IDLE[threads]=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
  IDLE[disk]=$(du -sk "$WORK/idle-data" | cut -f1)
  log "idle: ${IDLE[cpu_ms]} ms CPU in $IDLE_SECS s (per 10 s: ${IDLE[samples]}), RSS ${IDLE[rss]} KiB," \
    "peak ${IDLE[hwm]} KiB, store ${IDLE[disk]} KiB"
  kill -0 "$pid" 2>/dev/null || record_failure idle "tern exited: $(tail -c 300 "$TERN_LOG")"
  stop_child "$pid"
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

mib() { if [[ -n ${1:-} ]]; then divide "$1" 1024 1; fi; }

# The median of the numbers "$@" (the upper one of the middle two for an even count).
median() {
  (($#)) || return 0
  printf '%s\n' "$@" | sort -g | sed -n "$(($# / 2 + 1))p"
}

report() {
  local mta
  # shellcheck disable=SC2086 # lists of numbers
  for mta in Tern Postfix; do
    RATE[$mta]=$(median ${R_RATE[$mta]:-})
    SECS[$mta]=$(median ${R_SECS[$mta]:-})
    CPU[$mta]=$(median ${R_CPU[$mta]:-})
    MEM[$mta]=$(mib "$(median ${R_MEM[$mta]:-})")
    SESS[$mta]=$(median ${R_SESS[$mta]:-})
    SINK_CPU[$mta]=$(median ${R_SINK_CPU[$mta]:-})
  done
  [[ $STREAM_ONLY == 1 ]] || flush_report
  stream_report
  [[ $SKIP_IDLE == 1 || $STREAM_ONLY == 1 ]] || idle_report
}

flush_report() {
  local mta ratio rates
  echo "## Outbound delivery to smtp-sink on loopback"
  echo
  echo "$MESSAGES messages of $SIZE bytes queued and deferred, then flushed at once to smtp-sink;"
  echo "at most $CONCURRENCY connections and $PER_CONNECTION messages per connection for both MTAs;"
  echo "medians of $ROUNDS rounds; $(nproc) CPUs, load average $LOAD_BEFORE before the run, $(date -u +%Y-%m-%d)."
  echo
  echo "| MTA | deliveries/s | flush s | CPU ms/msg | memory MiB | smtp-sink sessions | smtp-sink CPU % | deliveries/s per round | note |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
  for mta in Tern Postfix; do
    rates=${R_RATE[$mta]:-}
    echo "| $mta | ${RATE[$mta]:-failed} | ${SECS[$mta]} | ${CPU[$mta]} | ${MEM[$mta]} | ${SESS[$mta]} |" \
      "${SINK_CPU[$mta]} | ${rates# } | ${NOTE[$mta]:-} |"
  done
  echo
  ratio=$(divide "${RATE[Tern]:-}" "${RATE[Postfix]:-}" 2)
  echo "Tern / Postfix deliveries/s: **$ratio×** (target: at least 5×)."
  echo
  echo "Flush time runs from the trigger until smtp-sink has counted every message; CPU until the"
  echo "queue is empty. Tern's memory is its peak RSS during the flush. Postfix's CPU and memory"
  echo "are its master's process tree (every daemon, live or reaped), memory as the sum of the PSS"
  echo "of its ${POSTFIX_PROCESSES:-?} processes right after the flush. smtp-sink is one single-threaded"
  echo "process: near 100 % of one CPU, it is the ceiling."
}

stream_report() {
  local mta
  if ((STREAM > 0)); then
    echo
    echo "## A steady stream to smtp-sink"
    echo
    echo "$STREAM messages of $SIZE bytes submitted one after another over one session while"
    echo "smtp-sink listens, each relayed as it falls due."
    echo
    echo "| MTA | smtp-sink sessions | sessions per message |"
    echo "|---|---:|---:|"
    for mta in Tern Postfix; do
      echo "| $mta | ${STREAM_SESS[$mta]:-failed} | $(divide "${STREAM_SESS[$mta]:-}" "$STREAM" 3) |"
    done
  fi
}

idle_report() {
  echo
  echo "## Tern idle with $IDLE_ENTRIES deferred entries"
  echo
  echo "Entries of $IDLE_SIZE-byte messages, each attempted once (connection refused), next retry"
  echo "in an hour; Tern watched for $IDLE_SECS s."
  echo
  echo "| CPU ms | CPU % | CPU ms per 10 s | RSS MiB | peak RSS MiB | threads | store on disk MiB | note |"
  echo "|---:|---:|---|---:|---:|---:|---:|---|"
  echo "| ${IDLE[cpu_ms]:-} | ${IDLE[cpu_pct]:-} | ${IDLE[samples]:-} | $(mib "${IDLE[rss]:-}") |" \
    "$(mib "${IDLE[hwm]:-}") | ${IDLE[threads]:-} | $(mib "${IDLE[disk]:-}") | ${NOTE[idle]:-} |"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
install_packages
build_tern
SINK_PORT=$(pick_port)
flush_tern
flush_postfix
[[ $SKIP_IDLE == 1 || $STREAM_ONLY == 1 ]] || idle_overhead
report
if [[ $FAILURES -gt 0 ]]; then
  log "$FAILURES measurement(s) failed; see the notes above"
  exit 1
fi
