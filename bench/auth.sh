#!/usr/bin/env bash
# bench/auth.sh: what message authentication costs at ingest, in one run.
#
# The same DKIM-signed message (signed by dkimpy with a fresh RSA-2048 key; dnsmasq on loopback
# publishes the key, an SPF record that lists 127.0.0.1 and a DMARC p=reject record, so every
# message passes SPF, DKIM and DMARC) is sent by `tern bench` (SESSIONS sessions, MESSAGES
# messages) to Tern twice, alternating RUNS times: with `auth.verify = false` and with
# `auth.verify = true` (SPF for HELO and MAIL FROM, DKIM, ARC, DMARC, Authentication-Results).
# Tern runs as the catcher (its checks are the mx listener's, report-only), durable as ever.
# Prints a markdown table: msgs/s, p99, CPU ms per message for each, and the ratio on/off.
#
# Environment: SESSIONS (50), MESSAGES (10000), RUNS (2), TERN_BIN (skip the build),
#   KEEP_WORK=1 (keep logs and data). Needs dnsmasq and python3 with dkimpy (scripts/test
#   installs both).
set -euo pipefail

SESSIONS=${SESSIONS:-50}
MESSAGES=${MESSAGES:-10000}
RUNS=${RUNS:-2}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init bench-auth

command -v dnsmasq >/dev/null || die "dnsmasq is missing (apt-get install dnsmasq-base)"
python3 -c 'import dkim' 2>/dev/null || die "dkimpy is missing (python3 -m pip install dkimpy)"
build_tern
[[ -n $TERN ]] || die "no tern binary"

# The signing key and the signed message.
openssl genrsa -traditional -out "$WORK/key.pem" 2048 2>/dev/null
P=$(openssl rsa -in "$WORK/key.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
python3 - "$WORK/key.pem" "$WORK/message.eml" <<'PY'
import sys, dkim
key, out = sys.argv[1:]
body = "".join(f"Line {i} of a message that is about four kilobytes long, signed once.\r\n" for i in range(55))
msg = ("From: Bench <bench@bench.test>\r\nTo: sink@tern.test\r\nSubject: signed bench message\r\n"
       "Date: Thu, 03 Dec 2026 03:00:00 +0000\r\nMessage-ID: <bench@bench.test>\r\n"
       "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + body).encode()
sig = dkim.sign(msg, b"b1", b"bench.test", open(key, "rb").read(), include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
open(out, "wb").write(sig + msg)
PY

# DNS: dnsmasq answers for bench.test (TXT strings are at most 255 bytes: split the key).
DNS_PORT=$(pick_port)
KEY_STRINGS=$(printf 'v=DKIM1; k=rsa; p=%s' "$P" | fold -w 255 | sed 's/.*/"&"/' | paste -sd, -)
cat >"$WORK/dnsmasq.conf" <<CONF
port=$DNS_PORT
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
# Authoritative for .test: unknown names are NXDOMAIN (cached), never REFUSED (temperror).
local=/test/
local=/local/
txt-record=bench.test,"v=spf1 ip4:127.0.0.0/8 -all"
txt-record=_dmarc.bench.test,"v=DMARC1; p=reject"
txt-record=b1._domainkey.bench.test,$KEY_STRINGS
txt-record=bench.local,"v=spf1 ip4:127.0.0.0/8 -all"
CONF
spawn "$WORK/dnsmasq.out" "$WORK/dnsmasq.err" dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf"
sleep 0.3

declare -A RATE P99 CPU
run_one() { # $1 = label, $2 = verify (true|false), $3 = run number
  local label=$1 verify=$2 run=$3 dir="$WORK/tern-$2-$3" port http pid before after
  mkdir -p "$dir"
  port=$(pick_port); http=$(pick_port)
  cat >"$dir/tern.toml" <<TOML
hostname = "mx.bench.local"
data_dir = "$dir/data"
[smtp]
listen = ["127.0.0.1:$port"]
[http]
listen = "127.0.0.1:$http"
[outbound]
dns_servers = ["127.0.0.1:$DNS_PORT"]
[auth]
verify = $verify
TOML
  spawn "$dir/out" "$dir/err" "$TERN" serve --config "$dir/tern.toml"
  pid=$SPAWNED
  wait_port "$port" "$pid" || die "tern did not start: $(tail -5 "$dir/err")"
  before=$(cpu_ms "$pid")
  run_child "$dir/bench.json" "$dir/bench.err" "$TERN" bench --server "127.0.0.1:$port" \
    --sessions "$SESSIONS" --messages "$MESSAGES" --message "$WORK/message.eml" \
    --ehlo mail.bench.test --from bench@bench.test --to sink@tern.test --json \
    || die "tern bench failed: $(tail -5 "$dir/bench.err")"
  after=$(cpu_ms "$pid")
  stop_child "$pid"
  local rate p99
  rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.0f" % r["messages_per_sec"])' "$dir/bench.json")
  p99=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f" % r["latency_ms"]["p99"])' "$dir/bench.json")
  log "$label run $run: $rate msgs/s, p99 $p99 ms, CPU $((after - before)) ms"
  RATE[$label]="${RATE[$label]:-} $rate"
  P99[$label]="${P99[$label]:-} $p99"
  CPU[$label]=$(( ${CPU[$label]:-0} + after - before ))
  if [[ $verify == true ]] && ! grep -q 'dmarc=pass' "$dir/err"; then
    die "checks on, but no dmarc=pass logged: the run measured something else"
  fi
}

for run in $(seq "$RUNS"); do
  run_one off false "$run"
  run_one on true "$run"
done

mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }' <<<"$1"; }
OFF=$(mean "${RATE[off]}"); ON=$(mean "${RATE[on]}")
TOTAL=$((MESSAGES * RUNS))
echo "| Tern, $SESSIONS sessions, signed 4 KiB message | msgs/s (runs) | p99 ms (runs) | CPU ms/msg |"
echo "|---|---|---|---|"
echo "| auth.verify = false | $OFF (${RATE[off]# }) | ${P99[off]# } | $(divide "${CPU[off]}" "$TOTAL" 3) |"
echo "| auth.verify = true | $ON (${RATE[on]# }) | ${P99[on]# } | $(divide "${CPU[on]}" "$TOTAL" 3) |"
echo
echo "checks on / off: $(divide "$ON" "$OFF")"
