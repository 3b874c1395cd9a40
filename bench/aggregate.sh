#!/usr/bin/env bash
# Aggregation benchmark: fluxgate's `[[aggregate]]` side by side with carbon-c-relay's
# `aggregate`, in one run, on the same input and the same 100 rules.
#
# Scenario: LINES Graphite plaintext lines over CONNECTIONS TCP connections, NAMES distinct
# input series (`servers.dcN.hostNNNN.cpu.<field>`, all stamped with the run's start second),
# into 100 aggregation rules: rule KK takes the hosts whose number starts with KK
# (`^servers\.dc([0-9]+)\.hostKK[0-9]*\.cpu\.([a-z]+)$`) and computes `sum` and `count` per
# datacenter and field (`every 10 seconds expire after 60 seconds`, `send to` the sink,
# `stop`): 3,200 aggregate series, 6,400 aggregate lines per run. carbon-c-relay runs with
# `-w 2 -b 10000 -q 4000000 -s` as in bench/relay.sh.
#
# Measured per run: input lines/s (lines over the time the load generator took to write them;
# the relay reads only as fast as it aggregates, TCP pushes back), the relay's CPU seconds
# (utime + stime from /proc) from the first line until every aggregate reached the sink, per
# million input lines, and its peak RSS (VmHWM). Checked per run: the sink got all 6,400
# aggregates and their counts add up to LINES (nothing dropped); fluxgate's aggregates are
# compared with carbon-c-relay's of the same round (names, timestamps, values).
# Prints medians and every run; writes bench/results/aggregate-latest.md.
#
# Settings (environment): LINES=2000000 CONNECTIONS=2 RUNS=3 NAMES=100000 BUILD=1
#   RUN_TIMEOUT=240 (seconds one run may take)
# Smoke run: LINES=200000 RUNS=1 bash bench/aggregate.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LINES=${LINES:-2000000}
CONNECTIONS=${CONNECTIONS:-2}
RUNS=${RUNS:-3}
NAMES=${NAMES:-100000}
BUILD=${BUILD:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-240}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
RESULTS="$ROOT/bench/results"
mkdir -p "$RESULTS"
EVERY=10
EXPIRE=60
RULES=100
AGGREGATES=$((4 * RULES * 8 * 2))

command -v carbon-c-relay >/dev/null || die "carbon-c-relay not found: apt-get install carbon-c-relay"
command -v python3 >/dev/null || die "python3 not found (the capture sink is a Python script)"
if [[ $BUILD == 1 ]]; then
    log "building release binaries"
    cargo build --release -q -p fluxgate -p fluxgate-bench
fi
for b in fluxgate fg-loadgen; do
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

# A plaintext capture: every line received goes to FILE; exits once EXPECT lines arrived
# (then prints the wall clock) or after IDLE seconds without any.
SINK='
import socket, sys, threading, time
port, path, expect, idle = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(16)
print("listening", flush=True)
lock, lines, last, out = threading.Lock(), [0], [time.time()], open(path, "w")
def serve(conn):
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        *whole, buf = buf.split(b"\n")
        with lock:
            for l in whole:
                out.write(l.decode() + "\n")
            lines[0] += len(whole)
            last[0] = time.time()
srv.settimeout(0.2)
while lines[0] < expect and time.time() - last[0] < idle:
    try:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    except socket.timeout:
        pass
out.close()
print("done", lines[0], flush=True)
'

relay_rules() {
    local k
    for ((k = 0; k < RULES; k++)); do
        printf 'aggregate ^servers\\.dc([0-9]+)\\.host%02d[0-9]*\\.cpu\\.([a-z]+)$\n' "$k"
        printf '    every %d seconds expire after %d seconds\n' "$EVERY" "$EXPIRE"
        printf '    compute sum write to agg.dc\\1.hosts%02d.cpu.\\2.sum\n' "$k"
        printf '    compute count write to agg.dc\\1.hosts%02d.cpu.\\2.count\n' "$k"
        printf '    send to sink\n    stop\n    ;\n'
    done
}

fluxgate_rules() {
    local k
    for ((k = 0; k < RULES; k++)); do
        printf '[[aggregate]]\nmatch = "^servers\\\\.dc([0-9]+)\\\\.host%02d[0-9]*\\\\.cpu\\\\.([a-z]+)$"\n' "$k"
        printf 'every = %d\nexpire = %d\n' "$EVERY" "$EXPIRE"
        printf 'compute = [{ fn = "sum", write_to = "agg.dc\\\\1.hosts%02d.cpu.\\\\2.sum" }, { fn = "count", write_to = "agg.dc\\\\1.hosts%02d.cpu.\\\\2.count" }]\n' "$k" "$k"
        printf 'send_to = ["sink"]\nstop = true\n\n'
    done
}

# One run of one relay; prints "rate rss_kib cpu_s aggregates counted" on stdout.
run_one() {
    local relay=$1 n=$2 start=$3 dir="$WORK/$relay-$n"
    mkdir -p "$dir"
    local sink_port relay_port http_port
    sink_port=$(free_port)
    relay_port=$(free_port)
    python3 -c "$SINK" "$sink_port" "$dir/aggregates.txt" "$AGGREGATES" "$RUN_TIMEOUT" \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "the sink to listen" 5 grep -q '^listening' "$dir/sink.out"
    local relay_pid
    case $relay in
    fluxgate)
        http_port=$(free_port)
        {
            printf '[listeners.plaintext]\ntcp = "127.0.0.1:%s"\n' "$relay_port"
            printf '[listeners.http]\naddress = "127.0.0.1:%s"\n' "$http_port"
            printf '[[outputs.graphite]]\nname = "sink"\nprotocol = "plaintext"\n'
            printf 'cluster = "forward"\ndestinations = ["127.0.0.1:%s"]\n\n' "$sink_port"
            fluxgate_rules
        } >"$dir/fluxgate.toml"
        "$BIN/fluxgate" run --config "$dir/fluxgate.toml" 2>"$dir/relay.log" &
        relay_pid=$!
        ;;
    carbon-c-relay)
        {
            printf 'cluster sink\n    forward\n        127.0.0.1:%s\n    ;\n' "$sink_port"
            relay_rules
        } >"$dir/relay.conf"
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
        --names "$NAMES" --start "$start" --interval 0 --wait-close 0 \
        >"$dir/loadgen.out" 2>"$dir/loadgen.err" ||
        die "fg-loadgen failed: $(cat "$dir/loadgen.err")"
    wait_pid "$sink_pid" "$RUN_TIMEOUT" || true
    local rss cpu1
    rss=$(awk '/^VmHWM:/{print $2}' "/proc/$relay_pid/status")
    cpu1=$(proc_cpu_seconds "$relay_pid")
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    local gen elapsed got counted
    gen=$(grep '^result ' "$dir/loadgen.out" | tail -1)
    elapsed=$(kv "$gen" elapsed_s)
    got=$(wc -l <"$dir/aggregates.txt")
    counted=$(awk '$1 ~ /\.count$/ { s += $2 } END { printf "%.0f\n", s }' "$dir/aggregates.txt")
    awk -v l="$LINES" -v e="$elapsed" -v r="$rss" -v c0="$cpu0" -v c1="$cpu1" -v g="$got" -v c="$counted" \
        'BEGIN { printf "%.0f %d %.2f %d %d\n", l / e, r, c1 - c0, g, c }'
}

# Whether two aggregate captures agree: same names and timestamps, values equal to the six
# decimals both print (sums of the same values added in another order may differ below that).
compare() {
    python3 - "$1" "$2" <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        name, value, ts = line.split()
        d[(name, int(ts))] = float(value)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
diff = sorted(k for k in set(a) | set(b) if k not in a or k not in b or abs(a[k] - b[k]) > 1e-6 * max(1, abs(a[k])))
print("same" if not diff else "DIFFERENT (%d of %d, e.g. %s: %s vs %s)" % (len(diff), len(a), diff[0], a.get(diff[0]), b.get(diff[0])))
EOF
}

declare -A RATES RSS CPU
FAIL=0
TABLE=""
for ((n = 1; n <= RUNS; n++)); do
    if ((n % 2)); then order="fluxgate carbon-c-relay"; else order="carbon-c-relay fluxgate"; fi
    # Both relays of a round get the same timestamps, so their aggregates can be compared.
    start=$(date +%s)
    for relay in $order; do
        read -r rate rss cpu got counted < <(run_one "$relay" "$n" "$start")
        status=ok
        if [[ $got != "$AGGREGATES" || $counted != "$LINES" ]]; then
            status="LOSS ($got of $AGGREGATES aggregates, counts add up to $counted of $LINES)"
            FAIL=1
        fi
        per_m=$(awk -v c="$cpu" -v l="$LINES" 'BEGIN { printf "%.3f", c / (l / 1e6) }')
        RATES[$relay]+="$rate "
        RSS[$relay]+="$rss "
        CPU[$relay]+="$per_m "
        TABLE+=$(printf '| %d | %s | %s | %s | %s | %.1f | %s |' "$n" "$relay" "$rate" "$cpu" "$per_m" "$(awk -v k="$rss" 'BEGIN{print k/1024}')" "$status")$'\n'
        log "run $n $relay: $rate lines/s, $cpu CPU s ($per_m per million), peak RSS $((rss / 1024)) MiB, $status"
    done
    same=$(compare "$WORK/fluxgate-$n/aggregates.txt" "$WORK/carbon-c-relay-$n/aggregates.txt")
    log "run $n: fluxgate's aggregates vs carbon-c-relay's: $same"
    [[ $same == same ]] || FAIL=1
    TABLE+="| $n | aggregates compared | | | | | $same |"$'\n'
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
fg_rate=$(med "${RATES[fluxgate]}")
cc_rate=$(med "${RATES[carbon-c-relay]}")
fg_cpu=$(med "${CPU[fluxgate]}")
cc_cpu=$(med "${CPU[carbon-c-relay]}")
fg_rss=$(med "${RSS[fluxgate]}")
cc_rss=$(med "${RSS[carbon-c-relay]}")
{
    echo "## Aggregation: $LINES lines of $NAMES series through $RULES aggregate rules (sum + count), over $CONNECTIONS connections"
    echo
    echo "Command: \`LINES=$LINES CONNECTIONS=$CONNECTIONS RUNS=$RUNS NAMES=$NAMES bash bench/aggregate.sh\` ($(nproc) cores, $(date -u +%Y-%m-%d))"
    echo
    echo "| aggregator | median input lines/s | median CPU s per million lines | median peak RSS (MiB) |"
    echo "|---|---|---|---|"
    printf '| fluxgate | %.0f | %s | %.1f |\n' "$fg_rate" "$fg_cpu" "$(awk -v k="$fg_rss" 'BEGIN{print k/1024}')"
    printf '| carbon-c-relay 3.7 (-w 2 -b 10000 -q 4000000) | %.0f | %s | %.1f |\n' "$cc_rate" "$cc_cpu" "$(awk -v k="$cc_rss" 'BEGIN{print k/1024}')"
    echo
    awk -v a="$fg_rate" -v b="$cc_rate" -v c="$fg_cpu" -v d="$cc_cpu" \
        'BEGIN { printf "fluxgate / carbon-c-relay: %.1fx the rate, %.1fx less CPU per line\n", a / b, (c > 0) ? d / c : 0 }'
    echo
    echo "| run | aggregator | lines/s | CPU s | CPU s / M lines | peak RSS (MiB) | check |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s' "$TABLE"
} | tee "$RESULTS/aggregate-latest.md"
exit $FAIL
