#!/usr/bin/env bash
# Scale-out benchmark: Graphite plaintext -> edge fluxgate -> NATS JetStream -> deliverer
# fluxgate -> line protocol over HTTP to a counting sink (fg-sink), with streams of 1 replica
# (one nats-server) and 3 replicas (three nats-servers with cluster routes), side by side with
# the direct path (plaintext -> one fluxgate -> sink) in the same run.
#
# Per scenario and run: fresh servers on free loopback ports, LINES lines over CONNECTIONS
# connections by fg-loadgen. Reported:
#   - edge publish rate: LINES / (first line sent -> the edge's fluxgate_sent_points_total
#     reaching LINES, i.e. every batch acknowledged by the stream);
#   - end-to-end rate: LINES / (first line sent -> last point counted by the sink);
#   - CPU seconds (utime+stime from /proc) per million lines of each role: edge, nats-server
#     (all of them), deliverer; for the direct path, the one fluxgate.
# Nothing may be lost: the sink must count LINES points and no fluxgate may drop or reject.
# Prints medians over RUNS runs and every run; writes bench/results/nats.md.
#
# Settings (environment):
#   LINES=2000000 CONNECTIONS=2 RUNS=3 NAMES=50000   the workload
#   SCENARIOS="direct r1 r3"   which paths to measure, in this order each run
#   BATCH=5000                 points per JetStream message (the edge's batch_size)
#   RUN_TIMEOUT=180 BUILD=1    as bench/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LINES=${LINES:-2000000}
CONNECTIONS=${CONNECTIONS:-2}
RUNS=${RUNS:-3}
NAMES=${NAMES:-50000}
SCENARIOS=${SCENARIOS:-direct r1 r3}
BATCH=${BATCH:-5000}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}
BUILD=${BUILD:-1}
RESULTS=${RESULTS:-$ROOT/bench/results}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}

if [[ $BUILD == 1 ]]; then
    log "building fluxgate (release)"
    cargo build --release -p fluxgate
    log "building fg-loadgen and fg-sink (release)"
    cargo build --release -p fluxgate-bench --bins
fi
for b in fluxgate fg-loadgen fg-sink; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run without BUILD=0"
done
[[ -x $NATS_SERVER ]] || die "nats-server not found: run scripts/install-test-deps.sh (Debian package nats-server)"
mkdir -p "$RESULTS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-bench-nats.XXXXXX")
PIDS=()
stop_all() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_nats DIR REPLICAS: starts 1 or 3 nats-servers; sets NATS_URLS (TOML list) and NATS_PIDS.
start_nats() {
    local dir=$1 n=$2 i
    local -a client=() monitor=() cluster=()
    for ((i = 0; i < n; i++)); do
        client+=("$(free_port)")
        monitor+=("$(free_port)")
        cluster+=("$(free_port)")
    done
    NATS_PIDS=()
    NATS_URLS=""
    for ((i = 0; i < n; i++)); do
        local d=$dir/nats$i routes="" j
        mkdir -p "$d"
        for ((j = 0; j < n; j++)); do
            [[ $j == "$i" ]] || routes+="nats-route://127.0.0.1:${cluster[$j]}, "
        done
        {
            echo "server_name: n$i"
            echo "listen: 127.0.0.1:${client[$i]}"
            echo "http: 127.0.0.1:${monitor[$i]}"
            echo "jetstream { store_dir: \"$d/js\", max_file_store: 8589934592 }"
            if [[ $n -gt 1 ]]; then
                echo "cluster { name: bench, listen: 127.0.0.1:${cluster[$i]}, routes: [${routes%, }] }"
            fi
        } >"$d/nats.conf"
        "$NATS_SERVER" -c "$d/nats.conf" >"$d/nats.log" 2>&1 &
        NATS_PIDS+=("$!")
        PIDS+=("$!")
        NATS_URLS+="\"nats://127.0.0.1:${client[$i]}\", "
    done
    NATS_URLS="[${NATS_URLS%, }]"
    for ((i = 0; i < n; i++)); do
        wait_for "nats-server $i" 30 http_get "127.0.0.1:${monitor[$i]}" /healthz ||
            die "nats-server did not start: $(tail -5 "$dir/nats$i/nats.log")"
    done
}

# start_fluxgate NAME CONFIG_BODY: writes and starts a fluxgate with an HTTP listener
# (health, metrics) on a free port; sets FG_PID and FG_HTTP.
start_fluxgate() {
    local name=$1 body=$2 dir=$WORK/cur
    FG_HTTP=127.0.0.1:$(free_port)
    printf '[log]\nlevel = "warn"\n\n[listeners.http]\naddress = "%s"\n\n%s\n' "$FG_HTTP" "$body" \
        >"$dir/$name.toml"
    "$BIN/fluxgate" run --config "$dir/$name.toml" >"$dir/$name.log" 2>&1 &
    FG_PID=$!
    PIDS+=("$FG_PID")
    wait_for "$name /health" 15 http_get "$FG_HTTP" /health || {
        cat "$dir/$name.log" >&2
        die "$name did not start"
    }
}

cpu_sum() {
    local total=0 p
    for p in "$@"; do
        total=$(awk -v a="$total" -v b="$(proc_cpu_seconds "$p")" 'BEGIN{printf "%.2f", a + b}')
    done
    echo "$total"
}

per_million() { awk -v c="$1" -v n="$LINES" 'BEGIN{printf "%.3f", c / (n / 1e6)}'; }

# run_once SCENARIO LABEL: appends one row to $WORK/rows.tsv.
run_once() {
    local scenario=$1 label=$2
    local dir=$WORK/cur
    rm -rf "$dir"
    mkdir -p "$dir"

    "$BIN/fg-sink" http --listen 127.0.0.1:0 --expect "$LINES" --idle-exit 60 --progress 0.25 \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "fg-sink to listen" 5 grep -q '^listening ' "$dir/sink.out"
    local sink_addr
    sink_addr=$(awk '/^listening /{print $3; exit}' "$dir/sink.out")
    local plain_port
    plain_port=$(free_port)
    local influx_out
    influx_out=$(printf '[[outputs.influxdb]]\nname = "sink"\nurl = "http://%s"\nflush_interval = "100ms"\n' "$sink_addr")
    local graphite='[graphite]
templates = ["servers.* .dc.host.measurement.field*"]'

    local edge_pid deliverer_pid edge_http deliverer_http replicas=0
    NATS_PIDS=()
    case $scenario in
        direct)
            start_fluxgate direct "$(printf '[listeners.plaintext]\ntcp = "127.0.0.1:%s"\n\n%s\n\n%s' \
                "$plain_port" "$graphite" "$influx_out")"
            edge_pid=$FG_PID edge_http=$FG_HTTP
            ;;
        r1 | r3)
            replicas=${scenario#r}
            start_nats "$dir" "$replicas"
            start_fluxgate edge "$(printf '[listeners.plaintext]\ntcp = "127.0.0.1:%s"\n\n%s\n\n[[outputs.nats]]\nname = "js"\nservers = %s\nstream = "bench"\nsubject = "fluxgate.{db}"\nreplicas = %s\nbatch_size = %s\nflush_interval = "100ms"\nqueue_points = 2000000\nqueue_bytes = 268435456\n' \
                "$plain_port" "$graphite" "$NATS_URLS" "$replicas" "$BATCH")"
            edge_pid=$FG_PID edge_http=$FG_HTTP
            start_fluxgate deliverer "$(printf '[listeners.nats]\nservers = %s\nstream = "bench"\nconsumer = "bench"\nbatch = 64\n\n%s' \
                "$NATS_URLS" "$influx_out")"
            deliverer_pid=$FG_PID deliverer_http=$FG_HTTP
            ;;
        *) die "unknown scenario $scenario" ;;
    esac

    # The edge's publishes are timed by its own counter, sampled while the load runs.
    local published_ns=na
    (
        deadline=$((SECONDS + RUN_TIMEOUT))
        while [[ $SECONDS -lt $deadline ]]; do
            sent=$(prom_sum "$(http_get "$edge_http" /metrics 2>/dev/null || true)" fluxgate_sent_points_total)
            if [[ $sent -ge $LINES ]]; then
                date +%s%N
                exit 0
            fi
            sleep 0.02
        done
        echo na
    ) >"$dir/published" &
    local sampler=$!
    PIDS+=("$sampler")

    "$BIN/fg-loadgen" --addr "127.0.0.1:$plain_port" --lines "$LINES" \
        --connections "$CONNECTIONS" --names "$NAMES" >"$dir/loadgen.out" 2>"$dir/loadgen.err" ||
        die "fg-loadgen failed: $(cat "$dir/loadgen.err")"
    wait "$sampler" || true
    published_ns=$(cat "$dir/published")
    local cpu_edge
    cpu_edge=$(proc_cpu_seconds "$edge_pid")
    wait_pid "$sink_pid" "$RUN_TIMEOUT" || true
    local cpu_nats=0 cpu_deliverer=0 dropped=0 m
    if [[ $scenario != direct ]]; then
        cpu_nats=$(cpu_sum "${NATS_PIDS[@]}")
        cpu_deliverer=$(proc_cpu_seconds "$deliverer_pid")
        m=$(http_get "$deliverer_http" /metrics || true)
        dropped=$(($(prom_sum "$m" fluxgate_dropped_total) + $(prom_sum "$m" fluxgate_rejected_total)))
    fi
    m=$(http_get "$edge_http" /metrics || true)
    dropped=$((dropped + $(prom_sum "$m" fluxgate_dropped_total) + $(prom_sum "$m" fluxgate_rejected_total)))
    mkdir -p "$RESULTS/runs/nats-$label"
    cp "$dir"/*.toml "$dir"/*.log "$dir"/*.out "$RESULTS/runs/nats-$label/" 2>/dev/null || true
    stop_all

    local gen sink start_ns last_ns points
    gen=$(grep '^result ' "$dir/loadgen.out" || true)
    sink=$(grep '^result ' "$dir/sink.out" || true)
    start_ns=$(kv "$gen" start_unix_ns)
    points=$(kv "$sink" points)
    last_ns=$(kv "$sink" last_unix_ns)
    local e2e pub status=ok
    e2e=$(awk -v a="$start_ns" -v b="$last_ns" -v n="$LINES" 'BEGIN{printf "%.0f", n / ((b - a) / 1e9)}')
    if [[ $published_ns == na ]]; then
        pub=0 status=TIMEOUT
    else
        pub=$(awk -v a="$start_ns" -v b="$published_ns" -v n="$LINES" 'BEGIN{printf "%.0f", n / ((b - a) / 1e9)}')
    fi
    [[ $points == "$LINES" && $dropped == 0 ]] || status=LOSS
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$label" "$pub" "$e2e" \
        "$(per_million "$cpu_edge")" "$(per_million "$cpu_nats")" "$(per_million "$cpu_deliverer")" \
        "$points" "$status" >>"$WORK/rows.tsv"
    log "$scenario run $label: edge published $pub lines/s, end to end $e2e lines/s, CPU-s/M" \
        "edge $(per_million "$cpu_edge") nats $(per_million "$cpu_nats") deliverer $(per_million "$cpu_deliverer"), $status"
}

log "workload: $LINES lines over $CONNECTIONS connections ($NAMES names), $RUNS runs of: $SCENARIOS"
: >"$WORK/rows.tsv"
for i in $(seq 1 "$RUNS"); do
    for s in $SCENARIOS; do
        run_once "$s" "$s-$i"
    done
done

col_median() { awk -F'\t' -v s="$1" -v c="$2" '$1 == s {print $c}' "$WORK/rows.tsv" | median; }
report() {
    echo "| path | edge publishes lines/s | end-to-end lines/s | edge CPU-s/M lines | nats-server CPU-s/M | deliverer CPU-s/M | runs ok |"
    echo "|:---|---:|---:|---:|---:|---:|---:|"
    local s name ok
    for s in $SCENARIOS; do
        case $s in
            direct) name="direct (one fluxgate)" ;;
            r1) name="edge -> JetStream R=1 -> deliverer" ;;
            r3) name="edge -> JetStream R=3 (3 nodes) -> deliverer" ;;
        esac
        ok=$(awk -F'\t' -v s="$s" '$1 == s && $9 == "ok"' "$WORK/rows.tsv" | wc -l)
        echo "| $name | $(col_median "$s" 3) | $(col_median "$s" 4) | $(col_median "$s" 5) | $(col_median "$s" 6) | $(col_median "$s" 7) | $ok/$RUNS |"
    done
    echo
    echo "Every run (scenario, run, edge lines/s, end-to-end lines/s, CPU-s/M edge, nats, deliverer, sink points, status):"
    echo
    echo '```'
    cat "$WORK/rows.tsv"
    echo '```'
}
echo
report
{
    echo "# fluxgate benchmark: scale-out through NATS JetStream"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- Machine: $(nproc) CPUs; load generator, fluxgates, nats-servers and sink share it"
    echo "- $LINES lines over $CONNECTIONS connections, $NAMES names, $RUNS runs; $("$NATS_SERVER" --version)"
    echo "- For the direct path the 'edge' columns are the one fluxgate (its rate: points delivered to the sink)."
    echo
    report
    echo
    echo "Reproduce: \`LINES=$LINES RUNS=$RUNS SCENARIOS=\"$SCENARIOS\" bash bench/nats.sh\`"
} >"$RESULTS/nats.md"
log "wrote $RESULTS/nats.md"
