#!/usr/bin/env bash
# End-to-end benchmark of fluxgate (what `make bench` runs).
#
# Scenario: Graphite plaintext over TCP -> fluxgate -> InfluxDB line protocol over HTTP to a
# counting sink (fg-sink), LINES lines over CONNECTIONS connections, RUNS times. Each run
# starts a fresh sink and a fresh gateway on free loopback ports, sends the whole stream with
# fg-loadgen, waits until the sink has counted every point, and checks that nothing was lost
# (sink count, and the gateway's own fluxgate_sent_points_total). The throughput is end to
# end: from the first line sent to the last point the sink received. The gateway's peak RSS
# is its VmHWM. Prints the median and every run; writes bench/results/latest.md.
#
# Settings (environment):
#   LINES=2000000 CONNECTIONS=2 RUNS=5 NAMES=50000   the workload
#   FLUSH_INTERVAL=100ms   the output's flush_interval (everything else is the default)
#   BUFFER=memory          disk = the output gets buffer = "disk" (a log under the run's
#                          directory, fsynced every flush_interval)
#   RUN_TIMEOUT=120        seconds one run may take before it counts as failed
#   BUILD=1                0 = use the binaries already built
#   PROFILE=0              1 = one more run under `perf record` (if perf is installed);
#                          reports go to bench/results/perf-*.txt
#   QUIET_WAIT=0 QUIET_MAX=25   before each run, wait up to QUIET_WAIT seconds for the
#                          machine to be at most QUIET_MAX % busy (other builds skew results);
#                          the busy % seen is reported either way
#   TARGET_RATE=1000000 TARGET_RSS_MIB=128   what the summary compares against
# Smoke run: LINES=200000 RUNS=1 bash bench/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LINES=${LINES:-2000000}
CONNECTIONS=${CONNECTIONS:-2}
RUNS=${RUNS:-5}
NAMES=${NAMES:-50000}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-100ms}
BUFFER=${BUFFER:-memory}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
BUILD=${BUILD:-1}
PROFILE=${PROFILE:-0}
QUIET_WAIT=${QUIET_WAIT:-0}
QUIET_MAX=${QUIET_MAX:-25}
TARGET_RATE=${TARGET_RATE:-1000000}
TARGET_RSS_MIB=${TARGET_RSS_MIB:-128}
RESULTS=${RESULTS:-$ROOT/bench/results}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

if [[ $BUILD == 1 ]]; then
    # Two invocations on purpose: built together, the benchmark tools' dependency features
    # would be unified into the gateway's, and we would measure a different gateway than
    # `cargo build --release -p fluxgate` ships.
    log "building fluxgate (release)"
    cargo build --release -p fluxgate
    log "building fg-loadgen and fg-sink (release)"
    cargo build --release -p fluxgate-bench --bins
fi
for b in fluxgate fg-loadgen fg-sink; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run without BUILD=0"
done
mkdir -p "$RESULTS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# One run; appends a row to $WORK/rows.tsv. $1 = run label, $2 = 1 to profile it.
run_once() {
    local label=$1 profile=${2:-0}
    local dir=$WORK/$label
    mkdir -p "$dir"
    local busy
    busy=$(wait_quiet "$QUIET_MAX" "$QUIET_WAIT")

    "$BIN/fg-sink" http --listen 127.0.0.1:0 --expect "$LINES" --idle-exit 30 --progress 0.25 \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "fg-sink to listen" 5 grep -q '^listening ' "$dir/sink.out"
    local sink_addr
    sink_addr=$(awk '/^listening /{print $3; exit}' "$dir/sink.out")

    local plain_port http_port
    plain_port=$(free_port)
    http_port=$(free_port)
    while [[ $http_port == "$plain_port" ]]; do http_port=$(free_port); done
    cat >"$dir/fluxgate.toml" <<EOF
[log]
level = "warn"
$( [[ $BUFFER == disk ]] && printf '\n[gateway]\ndata_dir = "%s"\n' "$dir/data" )

[listeners.plaintext]
tcp = "127.0.0.1:$plain_port"

[listeners.http]
address = "127.0.0.1:$http_port"

[graphite]
templates = ["servers.* .dc.host.measurement.field*"]

[[outputs.influxdb]]
name = "bench"
url = "http://$sink_addr"
flush_interval = "$FLUSH_INTERVAL"
$( [[ $BUFFER == disk ]] && echo 'buffer = "disk"' )
EOF
    cp "$dir/fluxgate.toml" "$WORK/fluxgate.toml"
    "$BIN/fluxgate" run --config "$dir/fluxgate.toml" >"$dir/fluxgate.log" 2>&1 &
    local fg_pid=$!
    PIDS+=("$fg_pid")
    if ! wait_for "fluxgate /health" 15 http_get "127.0.0.1:$http_port" /health; then
        cat "$dir/fluxgate.log" >&2
        die "fluxgate did not start"
    fi

    local perf_pid= sampler_pid=
    if [[ $profile == 1 ]]; then
        # The queue depth over time shows whether ingest outruns delivery (then the queue,
        # and RSS with it, grows toward queue_points). Not done in measured runs: each
        # sample costs a curl.
        (
            t0=$SECONDS
            while :; do
                printf '%s\t%s\n' "$(date +%s.%N)" \
                    "$(prom_sum "$(http_get "127.0.0.1:$http_port" /metrics 2>/dev/null)" fluxgate_queue_points)"
                sleep 0.05
                [[ $((SECONDS - t0)) -lt $RUN_TIMEOUT ]] || break
            done
        ) >"$dir/queue.tsv" &
        sampler_pid=$!
        PIDS+=("$sampler_pid")
        # Flat profile: release builds keep no frame pointers, so call graphs would be noise.
        perf record -q -F 4999 -p "$fg_pid" -o "$RESULTS/perf.data" 2>"$dir/perf.err" &
        perf_pid=$!
        PIDS+=("$perf_pid")
        sleep 0.5
    fi

    if ! "$BIN/fg-loadgen" --addr "127.0.0.1:$plain_port" --lines "$LINES" \
        --connections "$CONNECTIONS" --names "$NAMES" >"$dir/loadgen.out" 2>"$dir/loadgen.err"; then
        cat "$dir/loadgen.err" >&2
        die "fg-loadgen failed"
    fi

    local sink_rc=0
    wait_pid "$sink_pid" "$RUN_TIMEOUT" || true
    wait "$sink_pid" || sink_rc=$?
    # The sink exits after its last 204; give the gateway a moment to count that delivery.
    local metrics sent=0 deadline=$((SECONDS + 10))
    while :; do
        metrics=$(http_get "127.0.0.1:$http_port" /metrics || true)
        sent=$(prom_sum "$metrics" fluxgate_sent_points_total)
        [[ $sent -ge $LINES || $SECONDS -ge $deadline ]] && break
        sleep 0.1
    done
    local rss_kib cpu_fg
    rss_kib=$(awk '/^VmHWM:/{print $2}' "/proc/$fg_pid/status")
    cpu_fg=$(proc_cpu_seconds "$fg_pid")
    thread_cpu "$fg_pid" >"$dir/threads.txt" || true
    if [[ -n $sampler_pid ]]; then
        kill "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
        log "queue depth: max $(cut -f2 "$dir/queue.tsv" | sort -n | tail -1) points" \
            "(samples every ~50 ms in $RESULTS/runs/$label/queue.tsv)"
    fi
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    kill -TERM "$fg_pid" 2>/dev/null || true
    wait "$fg_pid" 2>/dev/null || true
    PIDS=()

    local received rejected dropped retries errors
    received=$(prom_sum "$metrics" fluxgate_received_total)
    rejected=$(prom_sum "$metrics" fluxgate_rejected_total)
    dropped=$(prom_sum "$metrics" fluxgate_dropped_total)
    retries=$(prom_sum "$metrics" fluxgate_retries_total)
    errors=$(prom_sum "$metrics" fluxgate_send_errors_total)

    local gen sink
    gen=$(grep '^result ' "$dir/loadgen.out" || true)
    sink=$(grep '^result ' "$dir/sink.out" || true)
    [[ -n $gen ]] || die "no result from fg-loadgen: $(cat "$dir/loadgen.err")"
    [[ -n $sink ]] || die "no result from fg-sink: $(cat "$dir/sink.err")"
    local start_ns last_ns points gen_rate gen_cpu sink_cpu requests
    start_ns=$(kv "$gen" start_unix_ns)
    gen_rate=$(kv "$gen" lines_per_s)
    gen_cpu=$(kv "$gen" cpu_s)
    points=$(kv "$sink" points)
    last_ns=$(kv "$sink" last_unix_ns)
    sink_cpu=$(kv "$sink" cpu_s)
    requests=$(kv "$sink" requests)

    mkdir -p "$RESULTS/runs/$label"
    cp "$dir"/*.out "$dir"/*.err "$dir/fluxgate.toml" "$dir/fluxgate.log" "$dir/threads.txt" \
        "$dir"/*.tsv "$RESULTS/runs/$label/" 2>/dev/null || true
    printf '%s\n' "$metrics" >"$RESULTS/runs/$label/metrics.prom"

    local e2e_s rate lost status=ok
    if [[ $last_ns == na ]]; then
        e2e_s=na rate=0
    else
        e2e_s=$(awk -v a="$start_ns" -v b="$last_ns" 'BEGIN{printf "%.3f", (b-a)/1e9}')
        rate=$(awk -v n="$LINES" -v s="$e2e_s" 'BEGIN{printf "%.0f", n/s}')
    fi
    lost=$((LINES - points))
    if [[ $points -ne $LINES || $sent -ne $LINES || $received -ne $LINES || $sink_rc -ne 0 ]]; then
        status=LOSS
        cp "$dir/fluxgate.log" "$RESULTS/fluxgate-$label.log"
        cp "$dir/sink.err" "$RESULTS/sink-$label.err"
    fi
    [[ $rejected -eq 0 && $dropped -eq 0 ]] || status=LOSS
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$label" "$rate" "$gen_rate" "$e2e_s" "$points" "$sent" "$lost" \
        "$(awk -v k="$rss_kib" 'BEGIN{printf "%.1f", k/1024}')" \
        "$cpu_fg" "$sink_cpu" "$gen_cpu" "$requests" "$retries/$errors" "$busy%" "$status" \
        "$rejected/$dropped" >>"$WORK/rows.tsv"
    log "run $label: $rate lines/s end to end, sink $points/$LINES, fluxgate sent $sent," \
        "peak RSS $((rss_kib / 1024)) MiB, status $status"
}

log "scenario: $LINES lines over $CONNECTIONS connections ($NAMES names), $RUNS runs"
: >"$WORK/rows.tsv"
for i in $(seq 1 "$RUNS"); do
    run_once "$i"
done

if [[ $PROFILE == 1 ]]; then
    if command -v perf >/dev/null; then
        log "profiling one more run with perf"
        cp "$WORK/rows.tsv" "$WORK/rows.measured.tsv"
        run_once profile 1
        mv "$WORK/rows.measured.tsv" "$WORK/rows.tsv"
        perf report -i "$RESULTS/perf.data" --no-children --sort symbol --stdio \
            --percent-limit 0.5 2>/dev/null | grep -v '^$' >"$RESULTS/perf-symbols.txt" || true
        perf report -i "$RESULTS/perf.data" --no-children --sort comm,dso --stdio \
            2>/dev/null | grep -v '^$' >"$RESULTS/perf-threads.txt" || true
        log "perf reports: $RESULTS/perf-symbols.txt, $RESULTS/perf-threads.txt"
    else
        log "PROFILE=1 but perf is not installed: skipped"
    fi
fi

median_rate=$(cut -f2 "$WORK/rows.tsv" | median)
median_rss=$(cut -f8 "$WORK/rows.tsv" | median)
max_rss=$(cut -f8 "$WORK/rows.tsv" | sort -n | tail -1)
median_ingest=$(cut -f3 "$WORK/rows.tsv" | median)
failed=$(awk -F'\t' '$15 != "ok"' "$WORK/rows.tsv" | wc -l)
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN{ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "MISSED"}'; }

table() {
    echo "| run | end-to-end lines/s | ingest lines/s | end-to-end s | sink points | fluxgate sent | lost | rejected/dropped | peak RSS MiB | fluxgate CPU s | sink CPU s | loadgen CPU s | requests | retries/errors | machine busy before | status |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|"
    awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
        $1, $2, $3, $4, $5, $6, $7, $16, $8, $9, $10, $11, $12, $13, $14, $15}' "$WORK/rows.tsv"
}

summary() {
    echo "Median end-to-end: **$median_rate lines/s** (target >= $TARGET_RATE: $(verdict "$median_rate" "$TARGET_RATE" ">="))"
    echo "Median peak RSS of fluxgate: **$median_rss MiB**, max $max_rss MiB (target <= $TARGET_RSS_MIB MiB: $(verdict "$max_rss" "$TARGET_RSS_MIB" "<="))"
    echo "Median ingest rate (fg-loadgen's write side): $median_ingest lines/s"
    echo "Runs with lost, rejected or dropped points: $failed of $RUNS"
}

echo
summary
echo
table

{
    echo "# fluxgate benchmark: Graphite plaintext/TCP -> line protocol/HTTP"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' (crates/ modified)')"
    echo "- Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo), $(uname -sr); load generator, gateway and sink share it"
    echo "- Workload: $LINES lines over $CONNECTIONS TCP connections, $NAMES distinct names (fg-loadgen defaults otherwise), $RUNS runs"
    echo "- End to end = from fg-loadgen's first write to the last point fg-sink counted (gzip bodies decompressed and counted line by line)."
    echo "- Peak RSS = VmHWM of the fluxgate process at the end of the run."
    echo
    summary
    echo
    table
    echo
    echo "Gateway configuration (ports vary per run):"
    echo
    echo '```toml'
    cat "$WORK/fluxgate.toml"
    echo '```'
    echo
    echo "Reproduce: \`LINES=$LINES CONNECTIONS=$CONNECTIONS RUNS=$RUNS NAMES=$NAMES FLUSH_INTERVAL=$FLUSH_INTERVAL bash bench/run.sh\`"
} >"$RESULTS/latest.md"
log "wrote $RESULTS/latest.md"

[[ $failed -eq 0 ]] || die "$failed run(s) lost, rejected or dropped points"
