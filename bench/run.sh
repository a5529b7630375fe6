#!/usr/bin/env bash
# bench/run.sh: measure Tern against smtp-sink and Postfix on loopback, in one run.
#
#   1. smtp-sink (accepts and forgets: the ceiling of the loopback + client setup),
#   2. durable Tern (`tern serve`, fsync before "250"), with its CPU time and peak RSS,
#   3. a private Postfix instance (fsync per message, then discarded),
# each driven by Postfix's smtp-source and by `tern bench` with the same load.
# Prints a markdown table on stdout; progress and logs go to stderr. See bench/README.md.
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
SKIP_INSTALL=${SKIP_INSTALL:-0}
KEEP_WORK=${KEEP_WORK:-0}
TEST_DOMAIN=${TO##*@}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d /tmp/tern-bench.XXXXXX)
chmod 755 "$WORK" # Postfix's daemons (user postfix) must reach their queue below it.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Cleanup: every process this script starts is recorded here and stopped on exit.
# ---------------------------------------------------------------------------------------------
PIDS=()
POSTFIX_CONF=""
MAIN_CF_BACKUP=""
MAIN_CF_CREATED=0

stop_pid() {
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

forget_pid() {
  local pid=$1 kept=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

postfix_stop() {
  [[ -n $POSTFIX_CONF ]] || return 0
  local pidfile="$WORK/postfix/queue/pid/master.pid" master="" _
  [[ -r $pidfile ]] && master=$(tr -d ' ' <"$pidfile")
  postfix -c "$POSTFIX_CONF" stop >/dev/null 2>&1 || true
  for _ in $(seq 100); do
    if [[ -z $master ]] || ! kill -0 "$master" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [[ -n $master ]] && kill -0 "$master" 2>/dev/null; then
    postfix -c "$POSTFIX_CONF" abort >/dev/null 2>&1 || true
  fi
  POSTFIX_CONF=""
}

restore_main_cf() {
  if [[ -n $MAIN_CF_BACKUP ]]; then
    cp -p "$MAIN_CF_BACKUP" /etc/postfix/main.cf
  elif [[ $MAIN_CF_CREATED == 1 ]]; then
    rm -f /etc/postfix/main.cf
  fi
  MAIN_CF_BACKUP=""
  MAIN_CF_CREATED=0
}

cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  postfix_stop
  restore_main_cf
  if [[ $KEEP_WORK == 1 || $status != 0 ]]; then
    log "logs and data kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

# True if something accepts TCP connections on 127.0.0.1:$1 (pure bash, no nc).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free high port on 127.0.0.1.
pick_port() {
  local port _
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    port_open "$port" || { echo "$port"; return 0; }
  done
  die "no free port found"
}

# Waits until $1 (a port) accepts connections; fails early if process $2 died.
wait_port() {
  local port=$1 pid=${2:-} _
  for _ in $(seq 300); do
    port_open "$port" && return 0
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

now_ns() { date +%s%N; }

# Runs "${@:3}" with stdout to $1 and stderr to $2 as a child that cleanup knows about, and
# waits for it: bash runs a trap during `wait` at once, but only after a foreground command has
# finished. (Redirecting the function's own output would also redirect the trap's messages.)
run_child() {
  local out=$1 err=$2 pid status=0
  shift 2
  "$@" >"$out" 2>"$err" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || status=$?
  forget_pid "$pid"
  return "$status"
}

# CPU time (user + system, all threads) of process $1 in milliseconds.
cpu_ms() {
  local stat fields
  stat=$(<"/proc/$1/stat")
  # Fields after "pid (comm) ": state is 1st, utime 12th, stime 13th (proc(5) 14 and 15).
  read -r -a fields <<<"${stat##*) }"
  echo $(((fields[11] + fields[12]) * 1000 / CLK_TCK))
}

# Peak resident set size of process $1 in KiB.
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# $1 squeezed onto one line that cannot break a markdown table.
one_line() { printf '%s' "$1" | tr '\n|' ' /' | tr -s ' '; }

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
# Setup: packages and the tern binary
# ---------------------------------------------------------------------------------------------

install_packages() {
  command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null &&
    command -v postfix >/dev/null && return 0
  [[ $SKIP_INSTALL == 1 ]] && die "smtp-source/smtp-sink/postfix missing and SKIP_INSTALL=1"
  [[ $(id -u) == 0 ]] || die "installing postfix needs root"
  log "installing postfix (no daemon is started)"
  # Keep Debian's maintainer scripts from starting a Postfix on port 25.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >&2
}

# Sets TERN to the release binary, building it unless TERN_BIN is given; empty on failure.
build_tern() {
  TERN=""
  if [[ -n ${TERN_BIN:-} ]]; then
    TERN=$TERN_BIN
    return 0
  fi
  log "building tern (release)"
  local messages="$WORK/cargo-build.json"
  # The JSON messages name the binary wherever CARGO_TARGET_DIR or .cargo/config put it.
  if ! (cd "$REPO" && cargo build --release -p tern --message-format=json-render-diagnostics) \
    >"$messages"; then
    log "cargo build failed: Tern rows will be missing"
    return 0
  fi
  TERN=$(grep -o '"executable":"[^"]*/tern"' "$messages" | tail -n 1 | sed 's/^"executable":"//; s/"$//')
  [[ -x $TERN ]] || { log "built, but no tern executable found"; TERN=""; }
}

# ---------------------------------------------------------------------------------------------
# The three servers
# ---------------------------------------------------------------------------------------------

bench_smtp_sink() {
  local port pid counts
  port=$(pick_port)
  log "smtp-sink on 127.0.0.1:$port"
  # -c prints a counter line (sess= quit= mesg=) per event to stdout: a check on the clients.
  smtp-sink -u nobody -c "127.0.0.1:$port" 1000 >"$WORK/smtp-sink.out" 2>"$WORK/smtp-sink.err" &
  pid=$!
  PIDS+=("$pid")
  wait_port "$port" "$pid" || die "smtp-sink did not start: $(cat "$WORK/smtp-sink.err")"
  run_smtp_source smtp-sink "$port"
  run_tern_bench smtp-sink "$port"
  stop_pid "$pid"
  forget_pid "$pid"
  counts=$(tr '\r' '\n' <"$WORK/smtp-sink.out" | grep -o 'mesg=[0-9]*' | tail -n 1 || true)
  log "smtp-sink saw ${counts:-no messages} in total"
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
  "$TERN" serve --smtp "127.0.0.1:$port" --http 127.0.0.1:0 --data "$data" --hostname bench.tern.test \
    >"$WORK/tern.out" 2>"$WORK/tern.log" &
  pid=$!
  PIDS+=("$pid")
  if ! wait_port "$port" "$pid"; then
    record_failure "Tern (durable)/smtp-source" "tern serve did not start: $(tail -c 300 "$WORK/tern.log")"
    record_failure "Tern (durable)/tern bench" "tern serve did not start"
    stop_pid "$pid"
    forget_pid "$pid"
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
  CPU["$key/smtp-source"]=$(awk -v ms="$((c1 - c0))" -v n="$MESSAGES" 'BEGIN { printf "%.3f", ms / n }')
  CPU["$key/tern bench"]=$(awk -v ms="$((c2 - c1))" -v n="$MESSAGES" 'BEGIN { printf "%.3f", ms / n }')
  kill -0 "$pid" 2>/dev/null || log "tern serve exited during the run: $(tail -c 300 "$WORK/tern.log")"
  stop_pid "$pid"
  forget_pid "$pid"
  # Cross-check the clients against the store (best effort: `tern messages` may change).
  local stored
  if stored=$("$TERN" messages --data "$data" list --limit "$((2 * MESSAGES + 100))" 2>/dev/null | wc -l); then
    log "tern stored $stored messages in total (expected $((2 * MESSAGES)) if both runs succeeded)"
  fi
}

# Writes a private instance's main.cf and master.cf to $1 (smtpd on 127.0.0.1:$2 only).
write_postfix_config() {
  local conf=$1 port=$2 base
  base=$(dirname "$conf")
  cat >"$conf/main.cf" <<EOF
# Private Postfix instance for bench/run.sh: accepts mail for $TEST_DOMAIN on 127.0.0.1:$port,
# queues it (fsync'd, as always) and discards it.
compatibility_level = 3.6
queue_directory = $base/queue
data_directory = $base/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.$TEST_DOMAIN
mydomain = $TEST_DOMAIN
myorigin = \$mydomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains = $TEST_DOMAIN
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_transport = discard
relay_transport = discard
local_transport = discard
smtpd_peername_lookup = no
biff = no
# Postfix silently refuses to start when maillog_file is outside maillog_file_prefixes.
maillog_file_prefixes = $base
maillog_file = $base/maillog
EOF
  cat >"$conf/master.cf" <<EOF
# service       type  private unpriv chroot wakeup maxproc command
127.0.0.1:$port inet  n       -      n      -      -       smtpd
pickup          unix  n       -      n      60     1       pickup
cleanup         unix  n       -      n      -      0       cleanup
qmgr            unix  n       -      n      300    1       qmgr
rewrite         unix  -       -      n      -      -       trivial-rewrite
bounce          unix  -       -      n      -      0       bounce
defer           unix  -       -      n      -      0       bounce
trace           unix  -       -      n      -      0       bounce
verify          unix  -       -      n      -      1       verify
flush           unix  n       -      n      1000?  0       flush
proxymap        unix  -       -      n      -      -       proxymap
showq           unix  n       -      n      -      -       showq
error           unix  -       -      n      -      -       error
retry           unix  -       -      n      -      -       error
discard         unix  -       -      n      -      -       discard
anvil           unix  -       -      n      -      1       anvil
scache          unix  -       -      n      -      1       scache
postlog         unix-dgram n  -      n      -      1       postlogd
EOF
}

# Lists $1 in alternate_config_directories of the default /etc/postfix/main.cf (undone on exit).
register_postfix_instance() {
  local conf=$1 current
  if [[ -e /etc/postfix/main.cf ]]; then
    MAIN_CF_BACKUP="$WORK/etc-postfix-main.cf.orig"
    cp -p /etc/postfix/main.cf "$MAIN_CF_BACKUP"
  else
    printf 'compatibility_level = 3.6\n' >/etc/postfix/main.cf
    MAIN_CF_CREATED=1
  fi
  current=$(postconf -h alternate_config_directories 2>/dev/null || true)
  postconf -e "alternate_config_directories = ${current:+$current, }$conf"
}

# Waits (at most a minute) until the instance's queue is empty, so runs do not overlap.
wait_postfix_queue_empty() {
  local _
  for _ in $(seq 600); do
    postqueue -c "$1" -p 2>/dev/null | grep -q 'Mail queue is empty' && return 0
    sleep 0.1
  done
  log "postfix queue still not empty"
}

bench_postfix() {
  local port base conf sent
  port=$(pick_port)
  base="$WORK/postfix"
  conf="$base/conf"
  mkdir -p "$conf" "$base/queue" "$base/data"
  chown postfix:postfix "$base/data"
  write_postfix_config "$conf" "$port"
  register_postfix_instance "$conf"
  log "postfix -c $conf start (smtpd on 127.0.0.1:$port)"
  if ! postfix -c "$conf" start >"$WORK/postfix-start.log" 2>&1; then
    record_failure "Postfix/smtp-source" "postfix start failed: $(tail -c 300 "$WORK/postfix-start.log") $(tail -c 300 "$base/maillog" 2>/dev/null)"
    record_failure "Postfix/tern bench" "postfix start failed"
    return 0
  fi
  POSTFIX_CONF=$conf
  wait_port "$port" || die "postfix smtpd is not listening: $(tail -c 500 "$base/maillog" 2>/dev/null)"
  run_smtp_source Postfix "$port"
  wait_postfix_queue_empty "$conf"
  run_tern_bench Postfix "$port"
  wait_postfix_queue_empty "$conf"
  postfix_stop
  restore_main_cf
  sent=$(grep -c 'status=sent' "$base/maillog" 2>/dev/null || true)
  log "postfix discarded ${sent:-0} messages in total"
}

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

ratio() {
  local a=${RATE[$1]:-} b=${RATE[$2]:-}
  if [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ && $b != 0 ]]; then
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }'
  else
    echo "n/a"
  fi
}

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

CLK_TCK=$(getconf CLK_TCK)
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
