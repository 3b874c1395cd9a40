#!/usr/bin/env bash
# StatsD over UDP: fluxgate side by side with Etsy statsd 0.9 (node), in one run.
#
# Scenario: fg-udpgen sends LINES StatsD metrics (counters, one in ten a timer; PER_DATAGRAM
# metrics per datagram, NAMES distinct names) at RATE metrics/s to the server's UDP port; the
# server flushes every FLUSH seconds with its Graphite backend to a dump (graphite_dump.py).
# UDP has no backpressure, so the figure is how much arrived: counted = the sum of every
# flushed `stats_counts.bench.c*` plus every `stats.timers.bench.t*.count`, against what was
# sent. Per run: achieved send rate, counted, loss, the server's CPU seconds (utime+stime from
# /proc) and CPU-s per million metrics counted; fluxgate's kernel drops from /metrics
# (fluxgate_udp_receive_drops_total). RUNS rounds alternate which server goes first;
# medians are printed and bench/results/statsd-latest.md is written.
#
# fluxgate runs with its defaults (recv_buffer_bytes = 8 MiB, which the kernel caps at
# net.core.rmem_max: raise it for the full buffer); statsd with its own (it sets no receive
# buffer: the system default, net.core.rmem_default).
#
# Settings (environment): LINES=2500000 RATE=500000 PER_DATAGRAM=20 NAMES=1000 FLUSH=2 RUNS=3
#   BUILD=1 BIN=<target>/release STATSD_DIR=tests/statsd/node_modules/statsd
# Smoke run: LINES=200000 RUNS=1 bash bench/statsd.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LINES=${LINES:-2500000}
RATE=${RATE:-500000}
PER_DATAGRAM=${PER_DATAGRAM:-20}
NAMES=${NAMES:-1000}
FLUSH=${FLUSH:-2}
RUNS=${RUNS:-3}
BUILD=${BUILD:-1}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
STATSD_DIR=${STATSD_DIR:-$ROOT/tests/statsd/node_modules/statsd}
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"

command -v node >/dev/null || die "node not found: apt-get install nodejs"
[[ -f $STATSD_DIR/stats.js ]] || die "Etsy statsd not found in $STATSD_DIR: run scripts/install-test-deps.sh"
if [[ $BUILD == 1 ]]; then
    log "building release binaries"
    cargo build --release -q -p fluxgate -p fluxgate-bench
fi
for b in fluxgate fg-udpgen; do
    [[ -x $BIN/$b ]] || die "$BIN/$b missing: cargo build --release -p fluxgate -p fluxgate-bench"
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# counted FILE: metrics the flushes in FILE account for.
counted() {
    awk '$1 ~ /^stats_counts\.bench\.c[0-9]+$/ || $1 ~ /^stats\.timers\.bench\.t[0-9]+\.count$/ { s += $2 }
         END { printf "%.0f\n", s }' "$1"
}

# One run of one server; prints "send_rate sent counted cpu_s kernel_drops".
run_one() {
    local server=$1 n=$2 dir="$WORK/$server-$n"
    mkdir -p "$dir"
    local sink_port udp_port http_port pid
    sink_port=$(free_port)
    udp_port=$(free_port)
    while [[ $udp_port == "$sink_port" ]]; do udp_port=$(free_port); done
    python3 "$ROOT/bench/graphite_dump.py" "$sink_port" "$dir/flushed.txt" >"$dir/sink.out" 2>&1 &
    PIDS+=($!)
    local sink_pid=$!
    wait_for "the Graphite dump to listen" 5 grep -q '^listening' "$dir/sink.out"
    case $server in
    fluxgate)
        http_port=$(free_port)
        cat >"$dir/fluxgate.toml" <<TOML
[listeners.http]
address = "127.0.0.1:$http_port"
[listeners.statsd]
udp = "127.0.0.1:$udp_port"
flush_interval = "${FLUSH}s"
[[outputs.graphite]]
name = "dump"
protocol = "plaintext"
cluster = "forward"
destinations = ["127.0.0.1:$sink_port"]
TOML
        "$BIN/fluxgate" run --config "$dir/fluxgate.toml" 2>"$dir/server.log" &
        pid=$!
        PIDS+=("$pid")
        wait_for "fluxgate to start" 10 http_get "127.0.0.1:$http_port" /health ||
            die "fluxgate did not start: $(tail -5 "$dir/server.log")"
        ;;
    statsd)
        cat >"$dir/config.js" <<JS
{ port: $udp_port, address: "127.0.0.1", mgmt_address: "127.0.0.1", mgmt_port: $(free_port),
  graphiteHost: "127.0.0.1", graphitePort: $sink_port, flushInterval: $((FLUSH * 1000)),
  backends: ["./backends/graphite"] }
JS
        (cd "$STATSD_DIR" && exec node stats.js "$dir/config.js") >"$dir/server.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        # Its own statsd.* metrics arrive with its first flush: then it is listening.
        wait_for "statsd to flush" $((FLUSH * 3 + 5)) grep -q '^stats' "$dir/flushed.txt" ||
            die "statsd did not start: $(tail -5 "$dir/server.log")"
        ;;
    esac
    local cpu0 cpu1
    cpu0=$(proc_cpu_seconds "$pid")
    "$BIN/fg-udpgen" statsd --addr "127.0.0.1:$udp_port" --lines "$LINES" --rate "$RATE" \
        --per-datagram "$PER_DATAGRAM" --names "$NAMES" >"$dir/gen.out" 2>"$dir/gen.err" ||
        die "fg-udpgen failed: $(cat "$dir/gen.err")"
    # What the socket still holds is read, then two flushes carry the last of it.
    sleep $((FLUSH * 2 + 1))
    cpu1=$(proc_cpu_seconds "$pid")
    local drops=na
    if [[ $server == fluxgate ]]; then
        drops=$(prom_sum "$(http_get "127.0.0.1:$http_port" /metrics)" fluxgate_udp_receive_drops_total)
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    kill "$sink_pid" 2>/dev/null || true
    local gen
    gen=$(grep '^result ' "$dir/gen.out" | tail -1)
    echo "$(kv "$gen" lines_per_s) $(kv "$gen" lines) $(counted "$dir/flushed.txt") $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b - a}') $drops"
}

declare -A LOSS CPUM SRATE
TABLE=""
busy=$(cpu_busy 1)
for ((n = 1; n <= RUNS; n++)); do
    if ((n % 2)); then order="fluxgate statsd"; else order="statsd fluxgate"; fi
    for server in $order; do
        read -r srate sent got cpu drops < <(run_one "$server" "$n")
        loss=$(awk -v s="$sent" -v g="$got" 'BEGIN{printf "%.3f", 100 * (s - g) / s}')
        cpum=$(awk -v c="$cpu" -v g="$got" 'BEGIN{ if (g > 0) printf "%.2f", c / (g / 1e6); else print "na" }')
        LOSS[$server]+="$loss "
        CPUM[$server]+="$cpum "
        SRATE[$server]+="$srate "
        TABLE+="| $n | $server | $srate | $sent | $got | $loss | $cpu | $cpum | $drops |"$'\n'
        log "run $n $server: sent $sent at $srate/s, counted $got, loss $loss%, CPU $cpu s ($cpum per million), kernel drops $drops"
    done
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
{
    echo "## StatsD over UDP: $LINES metrics at $RATE/s, $PER_DATAGRAM per datagram, $NAMES names"
    echo
    echo "Command: \`LINES=$LINES RATE=$RATE PER_DATAGRAM=$PER_DATAGRAM RUNS=$RUNS bash bench/statsd.sh\` ($(nproc) cores, machine ${busy}% busy before, net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max), $(date -u +%Y-%m-%d))"
    echo
    echo "| server | median send rate (metrics/s) | median loss (%) | median CPU-s per million metrics |"
    echo "|---|---|---|---|"
    for s in fluxgate statsd; do
        echo "| $s | $(med "${SRATE[$s]}") | $(med "${LOSS[$s]}") | $(med "${CPUM[$s]}") |"
    done
    echo
    echo "| run | server | send rate | sent | counted | loss (%) | CPU s | CPU-s/M | kernel drops |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s' "$TABLE"
} | tee "$RESULTS/statsd-latest.md"
