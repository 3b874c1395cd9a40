#!/usr/bin/env bash
# Graphite plaintext over UDP: loss at fixed rates, fluxgate side by side with carbon-c-relay.
#
# Scenario: fg-udpgen sends LINES plaintext lines (PER_DATAGRAM per datagram) at each rate of
# RATES lines/s to the relay's UDP listener; the relay forwards them (plaintext, `forward`)
# to a counting TCP sink (fg-sink tcp). UDP has no backpressure: loss = sent - counted at the
# sink. Per run: achieved send rate, loss, the relay's CPU seconds and CPU-s per million lines
# counted; for fluxgate the kernel's drops on its socket (fluxgate_udp_receive_drops_total).
# carbon-c-relay runs with `-s -w 2 -b 10000 -q 4000000` and its default socket buffer.
# RUNS rounds per rate alternate which relay goes first; medians are printed and
# bench/results/udp-latest.md is written.
#
# Settings (environment): RATES="200000 1000000" LINES=2000000 PER_DATAGRAM=10 RUNS=3
#   BUILD=1 BIN=<target>/release
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

RATES=${RATES:-200000 1000000}
LINES=${LINES:-2000000}
PER_DATAGRAM=${PER_DATAGRAM:-10}
RUNS=${RUNS:-3}
BUILD=${BUILD:-1}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"

command -v carbon-c-relay >/dev/null || die "carbon-c-relay not found: apt-get install carbon-c-relay"
if [[ $BUILD == 1 ]]; then
    log "building release binaries"
    cargo build --release -q -p fluxgate -p fluxgate-bench
fi
for b in fluxgate fg-udpgen fg-sink; do
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

# One run; prints "send_rate sent counted cpu_s kernel_drops".
run_one() {
    local relay=$1 rate=$2 n=$3 dir="$WORK/$relay-$rate-$n"
    mkdir -p "$dir"
    local sink_port udp_port http_port pid drops=na
    sink_port=$(free_port)
    udp_port=$(free_port)
    while [[ $udp_port == "$sink_port" ]]; do udp_port=$(free_port); done
    "$BIN/fg-sink" tcp --listen "127.0.0.1:$sink_port" --idle-exit 3 --progress 0 \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "fg-sink to listen" 5 grep -q '^listening ' "$dir/sink.out"
    case $relay in
    fluxgate)
        http_port=$(free_port)
        cat >"$dir/fluxgate.toml" <<TOML
[listeners.plaintext]
udp = "127.0.0.1:$udp_port"
[listeners.http]
address = "127.0.0.1:$http_port"
[[outputs.graphite]]
name = "sink"
protocol = "plaintext"
cluster = "forward"
destinations = ["127.0.0.1:$sink_port"]
TOML
        "$BIN/fluxgate" run --config "$dir/fluxgate.toml" 2>"$dir/relay.log" &
        pid=$!
        PIDS+=("$pid")
        wait_for "fluxgate to start" 10 http_get "127.0.0.1:$http_port" /health ||
            die "fluxgate did not start: $(tail -5 "$dir/relay.log")"
        ;;
    carbon-c-relay)
        local tcp_port
        tcp_port=$(free_port)
        while [[ $tcp_port == "$sink_port" || $tcp_port == "$udp_port" ]]; do tcp_port=$(free_port); done
        cat >"$dir/relay.conf" <<CONF
listen type linemode 127.0.0.1:$tcp_port proto tcp 127.0.0.1:$udp_port proto udp;
cluster sink forward 127.0.0.1:$sink_port;
match * send to sink;
CONF
        carbon-c-relay -f "$dir/relay.conf" -w 2 -b 10000 -q 4000000 -s >"$dir/relay.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_for "carbon-c-relay to start" 10 grep -q 'startup sequence complete' "$dir/relay.log" ||
            die "carbon-c-relay did not start: $(tail -5 "$dir/relay.log")"
        ;;
    esac
    local cpu0 cpu1
    kill -0 "$pid" 2>/dev/null || die "$relay exited at start: $(tail -5 "$dir"/relay.log)"
    cpu0=$(proc_cpu_seconds "$pid")
    "$BIN/fg-udpgen" plaintext --addr "127.0.0.1:$udp_port" --lines "$LINES" --rate "$rate" \
        --per-datagram "$PER_DATAGRAM" --names 10000 >"$dir/gen.out" 2>"$dir/gen.err" ||
        die "fg-udpgen failed: $(cat "$dir/gen.err")"
    # The sink exits 3 s after the last line arrived.
    wait_pid "$sink_pid" 120 || true
    cpu1=$(proc_cpu_seconds "$pid")
    if [[ $relay == fluxgate ]]; then
        drops=$(prom_sum "$(http_get "127.0.0.1:$http_port" /metrics)" fluxgate_udp_receive_drops_total)
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local gen sink
    gen=$(grep '^result ' "$dir/gen.out" | tail -1)
    sink=$(grep '^result ' "$dir/sink.out" | tail -1)
    echo "$(kv "$gen" lines_per_s) $(kv "$gen" lines) $(kv "$sink" points) $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b - a}') $drops"
}

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
busy=$(cpu_busy 1)
SUMMARY=""
TABLE=""
for rate in $RATES; do
    declare -A LOSS=() CPUM=() SRATE=()
    for ((n = 1; n <= RUNS; n++)); do
        if ((n % 2)); then order="fluxgate carbon-c-relay"; else order="carbon-c-relay fluxgate"; fi
        for relay in $order; do
            read -r srate sent got cpu drops < <(run_one "$relay" "$rate" "$n")
            got=${got:-0}
            loss=$(awk -v s="$sent" -v g="$got" 'BEGIN{printf "%.3f", 100 * (s - g) / s}')
            cpum=$(awk -v c="$cpu" -v g="$got" 'BEGIN{ if (g > 0) printf "%.2f", c / (g / 1e6); else print "na" }')
            LOSS[$relay]+="$loss "
            CPUM[$relay]+="$cpum "
            SRATE[$relay]+="$srate "
            TABLE+="| $rate | $n | $relay | $srate | $sent | $got | $loss | $cpu | $cpum | $drops |"$'\n'
            log "rate $rate run $n $relay: sent $sent at $srate/s, counted $got, loss $loss%, CPU $cpu s, kernel drops $drops"
        done
    done
    for relay in fluxgate carbon-c-relay; do
        SUMMARY+="| $rate | $relay | $(med "${SRATE[$relay]}") | $(med "${LOSS[$relay]}") | $(med "${CPUM[$relay]}") |"$'\n'
    done
done
{
    echo "## Graphite plaintext over UDP: $LINES lines per run, $PER_DATAGRAM lines per datagram"
    echo
    echo "Command: \`RATES=\"$RATES\" LINES=$LINES PER_DATAGRAM=$PER_DATAGRAM RUNS=$RUNS bash bench/udp.sh\` ($(nproc) cores, machine ${busy}% busy before, net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max), $(date -u +%Y-%m-%d))"
    echo
    echo "| target lines/s | relay | median send rate | median loss (%) | median CPU-s per million lines |"
    echo "|---|---|---|---|---|"
    printf '%s' "$SUMMARY"
    echo
    echo "| target | run | relay | send rate | sent | counted | loss (%) | CPU s | CPU-s/M | kernel drops |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    printf '%s' "$TABLE"
} | tee "$RESULTS/udp-latest.md"
