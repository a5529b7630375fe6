#!/usr/bin/env bash
# bench/soak.sh: Tern under a steady mixed load for a while; are its lines flat?
#
#   bench/soak.sh [SECONDS]        (default 1800: 30 minutes)
#
# Tern runs in MTA mode (release build) with one mailbox and a relay to smtp-sink. The driver
# (bench/soak.py) submits RATE messages/s over SMTP from SENDERS sessions (half to the mailbox,
# half relayed), and an API client lists, searches, reads and deletes (keeping about KEEP
# messages). Every SAMPLE seconds one row: RSS, open descriptors, store and WAL size, messages
# accepted and the p99 of their latency, the API's p99, stored messages and queue length.
# Prints the table (markdown) on stdout and writes soak.csv and soak.png (gnuplot, installed
# when missing) to OUT (default: the work directory, kept).
#
# Environment: RATE (100), SENDERS (8), SAMPLE (30), KEEP (20000), OUT, TERN_BIN,
#   SKIP_INSTALL=1.
set -euo pipefail

SECS=${1:-1800}
RATE=${RATE:-100}
SENDERS=${SENDERS:-8}
SAMPLE=${SAMPLE:-30}
KEEP=${KEEP:-20000}
KEEP_WORK=1

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init soak
OUT=${OUT:-$WORK}
mkdir -p "$OUT"

install_packages
if ! command -v gnuplot >/dev/null; then
  [[ $SKIP_INSTALL == 1 ]] && die "gnuplot missing and SKIP_INSTALL=1"
  log "installing gnuplot-nox"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >&2
fi
build_tern
[[ -n $TERN ]] || die "no tern binary"

smtp=$(pick_port)
http=$(pick_port)
sink=$(pick_port)
start_smtp_sink "$sink" "$WORK/sink.out"
data="$WORK/data"
cat >"$WORK/tern.toml" <<EOF
hostname = "tern.test"
data_dir = "$data"
mode = "mta"
[log]
level = "warn"
[[listener]]
address = "127.0.0.1:$smtp"
role = "mx"
[relay]
local_domains = ["tern.test"]
trusted_networks = ["127.0.0.0/8"]
[auth]
verify = false
[outbound]
relay_host = "127.0.0.1:$sink"
tls = "off"
[http]
listen = "127.0.0.1:$http"
EOF
echo pw | "$TERN" account add inbox@tern.test --password-stdin --data "$data" >&2
serve_tern "$WORK/tern.toml" "$smtp"
tern_pid=$SERVED_PID
log "soak for ${SECS}s at $RATE msg/s; tern $tern_pid; results in $OUT"

echo "# Soak: ${SECS} s at $RATE messages/s ($(nproc) cores, $(date -u +%Y-%m-%d))"
echo
python3 "$REPO/bench/soak.py" --smtp-port "$smtp" --http-port "$http" --pid "$tern_pid" \
  --store "$data" --secs "$SECS" --sample "$SAMPLE" --rate "$RATE" --senders "$SENDERS" \
  --keep "$KEEP" --csv "$OUT/soak.csv"
kill -0 "$tern_pid" 2>/dev/null || die "tern died during the soak: $(tail -n 5 "$WORK/tern.err")"
echo
echo "smtp-sink received $(sink_counter "$WORK/sink.out" mesg) relayed messages;" \
  "Tern logged $(grep -c ' ERROR ' "$WORK/tern.err" || true) errors."

gnuplot <<EOF
set terminal pngcairo size 1200,900 font ",10"
set output "$OUT/soak.png"
set datafile separator ","
set key autotitle columnhead
set multiplot layout 2,2 title "Tern soak: ${SECS} s at $RATE msg/s"
set xlabel "seconds"
set yrange [0:*]
set title "memory (MiB)"
plot "$OUT/soak.csv" using 1:2 with linespoints title "RSS"
set title "open file descriptors"
plot "$OUT/soak.csv" using 1:3 with linespoints title "fds"
set title "store on disk (MiB)"
plot "$OUT/soak.csv" using 1:4 with linespoints title "tern.db", "" using 1:5 with linespoints title "WAL"
set title "p99 latency (ms)"
plot "$OUT/soak.csv" using 1:7 with linespoints title "SMTP", "" using 1:8 with linespoints title "API"
unset multiplot
EOF
log "plot: $OUT/soak.png"
