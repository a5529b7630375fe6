# shellcheck shell=bash disable=SC2034 # globals set here (POSTFIX_ERROR, ...) are read by the sourcing scripts
# bench/lib.sh: what the bench scripts share, sourced by bench/run.sh and bench/outbound.sh.
#
# `bench_init NAME` makes the run's work directory (/tmp/tern-NAME.XXXXXX, in $WORK) and
# installs the cleanup: every process started through these helpers (recorded in PIDS), the
# private Postfix instance and /etc/postfix/main.cf are put back on exit. Logs go to stderr
# prefixed with "[NAME]".
#
# Environment read here: SKIP_INSTALL=1 (do not apt-get), KEEP_WORK=1 (keep logs and data),
# TERN_BIN (use this binary instead of building).

SKIP_INSTALL=${SKIP_INSTALL:-0}
KEEP_WORK=${KEEP_WORK:-0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLK_TCK=$(getconf CLK_TCK)
LOG_TAG=bench
WORK=""

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Cleanup: every process a script starts is recorded here and stopped on exit.
# ---------------------------------------------------------------------------------------------
PIDS=()
POSTFIX_CONF=""
POSTFIX_ERROR=""
MAIN_CF_BACKUP=""
MAIN_CF_CREATED=0

bench_init() {
  LOG_TAG=$1
  WORK=$(mktemp -d "/tmp/tern-$1.XXXXXX")
  chmod 755 "$WORK" # Postfix's daemons (user postfix) must reach their queue below it.
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

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

# Stops a process started with `spawn` and forgets it.
stop_child() {
  stop_pid "$1"
  forget_pid "$1"
}

# Starts "${@:3}" in the background with stdout to $1 and stderr to $2, recorded for cleanup;
# its PID is left in SPAWNED.
spawn() {
  local out=$1 err=$2
  shift 2
  "$@" >"$out" 2>"$err" &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
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
  [[ -n $WORK ]] || return 0
  if [[ $KEEP_WORK == 1 || $status != 0 ]]; then
    log "logs and data kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}

# ---------------------------------------------------------------------------------------------
# Ports, processes, /proc
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
  local status=0
  spawn "$@"
  wait "$SPAWNED" || status=$?
  forget_pid "$SPAWNED"
  return "$status"
}

# CPU time of process $1 in milliseconds: user + system over all its threads, plus that of the
# children it has waited for (none for Tern; Postfix's master reaps its daemons).
cpu_ms() {
  local stat fields
  stat=$(<"/proc/$1/stat")
  # Fields after "pid (comm) ": state is 1st, utime 12th, stime 13th, cutime 14th, cstime 15th
  # (proc(5) fields 14 to 17).
  read -r -a fields <<<"${stat##*) }"
  echo $(((fields[11] + fields[12] + fields[13] + fields[14]) * 1000 / CLK_TCK))
}

# Peak resident set size of process $1 in KiB.
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# $1 squeezed onto one line that cannot break a markdown table.
one_line() { printf '%s' "$1" | tr '\n|' ' /' | tr -s ' '; }

# a / b with $3 decimals, or "n/a" when either is not a number or b is 0.
divide() {
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b != 0) }'; then
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { printf "%.*f", d, a / b }'
  else
    echo "n/a"
  fi
}

# ---------------------------------------------------------------------------------------------
# smtp-sink
# ---------------------------------------------------------------------------------------------

# Starts smtp-sink on 127.0.0.1:$1, its counters to $2; its PID is left in SPAWNED.
# -c prints a counter line (sess= quit= mesg=) per event to stdout.
start_smtp_sink() {
  local port=$1 out=$2
  log "smtp-sink on 127.0.0.1:$port"
  spawn "$out" "$out.err" smtp-sink -u nobody -c "127.0.0.1:$port" 1000
  wait_port "$port" "$SPAWNED" || die "smtp-sink did not start: $(cat "$out.err")"
}

# The latest value of smtp-sink's counter $2 (sess, quit, mesg) in its output file $1, or 0.
# The lines end in "\r"; only the file's tail is read, so polling stays cheap.
sink_counter() {
  local value
  value=$(tail -c 512 "$1" 2>/dev/null | tr '\r' '\n' | grep -o "$2=[0-9]*" | tail -n 1 || true)
  value=${value#*=}
  echo "${value:-0}"
}

# ---------------------------------------------------------------------------------------------
# Setup: packages and the tern binary
# ---------------------------------------------------------------------------------------------

# Installs Postfix (smtp-source, smtp-sink, postfix) and curl when missing.
install_packages() {
  local missing=()
  command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null &&
    command -v postfix >/dev/null || missing+=(postfix)
  command -v curl >/dev/null || missing+=(curl)
  [[ ${#missing[@]} == 0 ]] && return 0
  [[ $SKIP_INSTALL == 1 ]] && die "${missing[*]} missing and SKIP_INSTALL=1"
  [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root"
  log "installing ${missing[*]} (no daemon is started)"
  # Keep Debian's maintainer scripts from starting a Postfix on port 25.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
}

# Starts "$TERN serve --config $1" (output in $WORK/tern.out and $WORK/tern.err) and waits
# until it listens on 127.0.0.1:$2; its PID is left in SERVED_PID. Dies when it does not start.
serve_tern() {
  spawn "$WORK/tern.out" "$WORK/tern.err" "$TERN" serve --config "$1"
  SERVED_PID=$SPAWNED
  wait_port "$2" "$SERVED_PID" || die "tern did not start: $(tail -n 5 "$WORK/tern.err")"
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
  if ! (cd "$REPO" \
    && cargo build --release --ignore-rust-version -p tern --message-format=json-render-diagnostics) \
    >"$messages"; then
    log "cargo build failed: Tern rows will be missing"
    return 0
  fi
  TERN=$(grep -o '"executable":"[^"]*/tern"' "$messages" | tail -n 1 | sed 's/^"executable":"//; s/"$//')
  [[ -x $TERN ]] || { log "built, but no tern executable found"; TERN=""; }
}

# ---------------------------------------------------------------------------------------------
# A private Postfix instance in $WORK/postfix
# ---------------------------------------------------------------------------------------------

# Writes the instance's main.cf and master.cf to $1, with smtpd on 127.0.0.1:$2 only, named
# postfix.$TEST_DOMAIN (set by the calling script). $3 is
# appended to main.cf (what the instance does with mail: relay_domains, transports, ...), $4
# to master.cf (the delivery services that needs beyond the common ones, e.g. smtp).
write_postfix_config() {
  local conf=$1 port=$2 main_extra=$3 master_extra=${4:-} base
  base=$(dirname "$conf")
  cat >"$conf/main.cf" <<EOF
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
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
biff = no
# Postfix silently refuses to start when maillog_file is outside maillog_file_prefixes.
maillog_file_prefixes = $base
maillog_file = $base/maillog
$main_extra
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
$master_extra
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

# Configures (see write_postfix_config for $2 to $4) and starts the instance in $WORK/postfix
# with smtpd on 127.0.0.1:$1, and waits for smtpd. Sets POSTFIX_CONF (stopped on exit). On
# failure returns 1 with the reason in POSTFIX_ERROR.
postfix_start() {
  local port=$1 base="$WORK/postfix" conf="$WORK/postfix/conf"
  mkdir -p "$conf" "$base/queue" "$base/data"
  chown postfix:postfix "$base/data"
  write_postfix_config "$conf" "$port" "$2" "${3:-}"
  register_postfix_instance "$conf"
  log "postfix -c $conf start (smtpd on 127.0.0.1:$port)"
  if ! postfix -c "$conf" start >"$WORK/postfix-start.log" 2>&1; then
    POSTFIX_ERROR="postfix start failed: $(tail -c 300 "$WORK/postfix-start.log") $(tail -c 300 "$base/maillog" 2>/dev/null)"
    return 1
  fi
  POSTFIX_CONF=$conf
  if ! wait_port "$port"; then
    POSTFIX_ERROR="postfix smtpd is not listening: $(tail -c 300 "$base/maillog" 2>/dev/null)"
    return 1
  fi
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
