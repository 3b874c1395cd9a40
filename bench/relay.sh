#!/usr/bin/env bash
# Graphite relay benchmark: fluxgate side by side with carbon-c-relay, in one run.
#
# Scenario: Graphite plaintext over TCP -> relay -> plaintext `forward` to a counting TCP sink
# (fg-sink tcp), LINES lines over CONNECTIONS connections. Each round runs both relays, one
# after the other, on fresh sinks and free loopback ports, with the same load generator and
# the same stream; RUNS rounds alternate which relay goes first. carbon-c-relay runs as the
# issue's reference setup: `-w 2 -b 10000 -q 4000000` (plus `-s`, so its own statistics
# metrics do not enter the count). Measured per run: end-to-end lines/s (first line sent to
# last line counted by the sink), the relay's peak RSS (VmHWM) and CPU seconds, and a loss
# check (sink count == lines sent). Prints medians and every run; writes
# bench/results/relay-latest.md.
#
# Settings (environment): LINES=2000000 CONNECTIONS=2 RUNS=5 NAMES=50000 BUILD=1
#   RUN_TIMEOUT=120 (seconds one run may take)
# Smoke run: LINES=200000 RUNS=1 bash bench/relay.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LINES=${LINES:-2000000}
CONNECTIONS=${CONNECTIONS:-2}
RUNS=${RUNS:-5}
NAMES=${NAMES:-50000}
BUILD=${BUILD:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
BIN="$ROOT/target/release"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"

command -v carbon-c-relay >/dev/null || die "carbon-c-relay not found: apt-get install carbon-c-relay"
if [[ $BUILD == 1 ]]; then
    log "building release binaries"
    cargo build --release -q -p fluxgate -p fluxgate-bench
fi
for b in fluxgate fg-loadgen fg-sink; do
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

# One run of one relay; prints "rate rss_kib cpu_s points" on stdout.
run_one() {
    local relay=$1 n=$2 dir="$WORK/$relay-$n"
    mkdir -p "$dir"
    local sink_port relay_port http_port
    sink_port=$(free_port)
    relay_port=$(free_port)
    "$BIN/fg-sink" tcp --listen "127.0.0.1:$sink_port" --expect "$LINES" --idle-exit 30 --progress 0 \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "fg-sink to listen" 5 grep -q '^listening ' "$dir/sink.out"
    local relay_pid
    case $relay in
    fluxgate)
        http_port=$(free_port)
        cat >"$dir/fluxgate.toml" <<EOF
[listeners.plaintext]
tcp = "127.0.0.1:$relay_port"
[listeners.http]
address = "127.0.0.1:$http_port"
[[outputs.graphite]]
name = "sink"
protocol = "plaintext"
cluster = "forward"
destinations = ["127.0.0.1:$sink_port"]
EOF
        "$BIN/fluxgate" run --config "$dir/fluxgate.toml" 2>"$dir/relay.log" &
        relay_pid=$!
        ;;
    carbon-c-relay)
        cat >"$dir/relay.conf" <<EOF
cluster sink
    forward
        127.0.0.1:$sink_port
    ;
match *
    send to sink
    ;
EOF
        carbon-c-relay -f "$dir/relay.conf" -p "$relay_port" -w 2 -b 10000 -q 4000000 -s \
            >"$dir/relay.log" 2>&1 &
        relay_pid=$!
        ;;
    esac
    PIDS+=("$relay_pid")
    wait_for "$relay to listen" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$relay_port" ||
        die "$relay did not start: $(tail -5 "$dir/relay.log")"
    local cpu0
    cpu0=$(proc_cpu_seconds "$relay_pid")
    "$BIN/fg-loadgen" --addr "127.0.0.1:$relay_port" --lines "$LINES" --connections "$CONNECTIONS" \
        --names "$NAMES" --wait-close 0 >"$dir/loadgen.out" 2>"$dir/loadgen.err" ||
        die "fg-loadgen failed: $(cat "$dir/loadgen.err")"
    wait_pid "$sink_pid" "$RUN_TIMEOUT" || true
    local rss cpu1
    rss=$(awk '/^VmHWM:/{print $2}' "/proc/$relay_pid/status")
    cpu1=$(proc_cpu_seconds "$relay_pid")
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    local gen sink start_ns last_ns points
    gen=$(grep '^result ' "$dir/loadgen.out" | tail -1)
    sink=$(grep '^result ' "$dir/sink.out" | tail -1)
    [[ -n $gen && -n $sink ]] || die "$relay: no result (sink: $(cat "$dir/sink.err"))"
    start_ns=$(kv "$gen" start_unix_ns)
    last_ns=$(kv "$sink" last_unix_ns)
    points=$(kv "$sink" points)
    awk -v l="$LINES" -v a="$start_ns" -v b="$last_ns" -v r="$rss" -v c0="$cpu0" -v c1="$cpu1" -v p="$points" \
        'BEGIN { printf "%.0f %d %.2f %d\n", l / ((b - a) / 1e9), r, c1 - c0, p }'
}

declare -A RATES RSS CPU
LOSS=0
TABLE=""
for ((n = 1; n <= RUNS; n++)); do
    if ((n % 2)); then order="fluxgate carbon-c-relay"; else order="carbon-c-relay fluxgate"; fi
    for relay in $order; do
        read -r rate rss cpu points < <(run_one "$relay" "$n")
        status=ok
        if [[ $points != "$LINES" ]]; then status="LOSS ($points of $LINES)"; LOSS=1; fi
        RATES[$relay]+="$rate "
        RSS[$relay]+="$rss "
        CPU[$relay]+="$cpu "
        TABLE+=$(printf '| %d | %s | %s | %.1f | %s | %s |' "$n" "$relay" "$rate" "$(awk -v k="$rss" 'BEGIN{print k/1024}')" "$cpu" "$status")$'\n'
        log "run $n $relay: $rate lines/s, peak RSS $((rss / 1024)) MiB, $cpu CPU s, $status"
    done
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
fg_rate=$(med "${RATES[fluxgate]}")
cc_rate=$(med "${RATES[carbon-c-relay]}")
fg_rss=$(med "${RSS[fluxgate]}")
cc_rss=$(med "${RSS[carbon-c-relay]}")
ratio=$(awk -v a="$fg_rate" -v b="$cc_rate" 'BEGIN { printf "%.1f", a / b }')
{
    echo "## Graphite relay: plaintext in, plaintext forward out, $LINES lines over $CONNECTIONS connections"
    echo
    echo "Command: \`LINES=$LINES CONNECTIONS=$CONNECTIONS RUNS=$RUNS bash bench/relay.sh\` ($(nproc) cores, $(date -u +%Y-%m-%d))"
    echo
    echo "| relay | median lines/s | median peak RSS (MiB) |"
    echo "|---|---|---|"
    printf '| fluxgate | %.0f | %.1f |\n' "$fg_rate" "$(awk -v k="$fg_rss" 'BEGIN{print k/1024}')"
    printf '| carbon-c-relay 3.7 (-w 2 -b 10000 -q 4000000) | %.0f | %.1f |\n' "$cc_rate" "$(awk -v k="$cc_rss" 'BEGIN{print k/1024}')"
    echo
    echo "fluxgate / carbon-c-relay: ${ratio}x"
    echo
    echo "| run | relay | lines/s | peak RSS (MiB) | CPU s | check |"
    echo "|---|---|---|---|---|---|"
    printf '%s' "$TABLE"
} | tee "$RESULTS/relay-latest.md"
exit $LOSS
