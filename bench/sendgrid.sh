#!/usr/bin/env bash
# bench/sendgrid.sh: how fast the catcher takes mail over SendGrid's v3 API, next to SMTP on
# the same server in the same run.
#
# One `tern serve` (the catcher, fresh data directory). First `wrk` (Debian's, installed when
# missing) keeps CONNECTIONS (50) HTTP/1.1 connections busy for DURATION seconds (10) with
# `POST /v3/mail/send`, one personalization and a SIZE-byte (4096) text body per request; then
# Postfix's `smtp-source -d -s 50 -l SIZE` sends MESSAGES (20000) over SMTP. Alternated ROUNDS
# times (3). Prints a markdown table: messages/s, p99 (wrk's; smtp-source has none), Tern's
# CPU ms per message and the HTTP/SMTP ratio; stored counts are checked against what each
# client was told was accepted.
#
#   sudo bench/sendgrid.sh                 # SKIP_INSTALL=1 TERN_BIN=… as in bench/run.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CONNECTIONS=${CONNECTIONS:-50}
DURATION=${DURATION:-10}
SIZE=${SIZE:-4096}
MESSAGES=${MESSAGES:-20000}
ROUNDS=${ROUNDS:-3}

bench_init sendgrid
install_packages
if ! command -v wrk >/dev/null; then
  [[ $SKIP_INSTALL == 1 ]] && die "wrk missing and SKIP_INSTALL=1"
  [[ $(id -u) == 0 ]] || die "installing wrk needs root"
  log "installing wrk"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2
fi
build_tern
[[ -n $TERN ]] || die "no tern binary"

SMTP_PORT=$(pick_port)
HTTP_PORT=$(pick_port)
cat >"$WORK/tern.toml" <<TOML
data_dir = "$WORK/data"
hostname = "bench.tern.test"
[smtp]
listen = ["127.0.0.1:$SMTP_PORT"]
[http]
listen = "127.0.0.1:$HTTP_PORT"
[retention]
max_messages = 0
TOML
serve_tern "$WORK/tern.toml" "$SMTP_PORT"
wait_port "$HTTP_PORT" "$SERVED_PID" || die "the HTTP listener did not start"

# The request body: SendGrid's shape with a SIZE-byte text part.
python3 - "$SIZE" >"$WORK/body.json" <<'PY'
import json, sys
size = int(sys.argv[1])
line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
text = (line * (size // len(line) + 1))[:size]
print(json.dumps({
    "personalizations": [{"to": [{"email": "user@example.com", "name": "User"}]}],
    "from": {"email": "app@example.org", "name": "App"},
    "subject": "Benchmark message",
    "content": [{"type": "text/plain", "value": text}],
    "categories": ["bench"],
}))
PY
cat >"$WORK/send.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer SG.bench"
local f = io.open("$WORK/body.json", "rb")
wrk.body = f:read("*a")
f:close()
LUA

stored() {
  curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/messages?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}

rows=()
http_rates=()
smtp_rates=()
for round in $(seq "$ROUNDS"); do
  before=$(stored)
  cpu0=$(cpu_ms "$SERVED_PID")
  log "round $round: wrk, $CONNECTIONS connections, ${DURATION}s"
  wrk -t 2 -c "$CONNECTIONS" -d "${DURATION}s" --latency -s "$WORK/send.lua" \
    "http://127.0.0.1:$HTTP_PORT/v3/mail/send" >"$WORK/wrk-$round.txt"
  cpu1=$(cpu_ms "$SERVED_PID")
  after=$(stored)
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk-$round.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-$round.txt")
  [[ -z $non2xx ]] || die "wrk saw $non2xx non-2xx answers: $(cat "$WORK/wrk-$round.txt")"
  rate=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$round.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk-$round.txt")
  # wrk counts the answers it read, and a 202 comes only after the commit: fewer stored than
  # answered is a lost message. A request in flight when the run ends may be stored without
  # being counted, so at most one more per connection.
  taken=$((after - before))
  diff=$((taken - requests))
  ((diff >= 0 && diff <= CONNECTIONS)) ||
    die "wrk counted $requests answers, $taken messages stored"
  http_cpu=$(divide $((cpu1 - cpu0)) "$taken" 3)
  http_rates+=("$rate")
  rows+=("| HTTP \`POST /v3/mail/send\` (wrk, $CONNECTIONS connections) | $round | ${rate%.*} | $p99 | $http_cpu | $taken |")

  before=$(stored)
  cpu0=$(cpu_ms "$SERVED_PID")
  log "round $round: smtp-source, 50 sessions, $MESSAGES messages"
  t0=$(now_ns)
  smtp-source -d -s 50 -l "$SIZE" -m "$MESSAGES" -f app@example.org -t user@example.com \
    "127.0.0.1:$SMTP_PORT" >"$WORK/smtp-$round.txt" 2>&1
  t1=$(now_ns)
  cpu1=$(cpu_ms "$SERVED_PID")
  after=$(stored)
  ((after - before == MESSAGES)) || die "smtp-source sent $MESSAGES, $((after - before)) stored"
  rate=$(awk -v n="$MESSAGES" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  smtp_rates+=("$rate")
  rows+=("| SMTP (smtp-source, 50 sessions) | $round | $rate | – | $(divide $((cpu1 - cpu0)) "$MESSAGES" 3) | $MESSAGES |")
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
http_median=$(median "${http_rates[@]}")
smtp_median=$(median "${smtp_rates[@]}")
echo "## Sending over SendGrid's API next to SMTP"
echo
echo "One catcher, $SIZE-byte messages, $ROUNDS alternating rounds, $(nproc) CPUs, $(date -u +%F)."
echo
echo "| path | round | msgs/s | p99 | Tern CPU ms/msg | stored |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "Medians: HTTP ${http_median%.*} msgs/s, SMTP $smtp_median msgs/s; HTTP / SMTP: **$(divide "$http_median" "$smtp_median")**."
