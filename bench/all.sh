#!/usr/bin/env bash
# Every benchmark path in one go, on one corpus, side by side: the byte-copy floor
# (fg-floor), carbon-c-relay, and fluxgate on each of its paths.
#
# Paths (LINES lines of the fg-loadgen corpus each, CONNECTIONS connections unless noted):
#   floor          fg-loadgen -> fg-floor (copies bytes, nothing else) -> fg-sink tcp
#   c-relay        fg-loadgen -> carbon-c-relay forward (-w 2 -b 10000 -q 4000000 -s) -> fg-sink tcp
#   forward        fg-loadgen -> fluxgate plaintext -> graphite output, cluster forward -> fg-sink tcp
#   carbon_ch      as forward, cluster carbon_ch over 4 destinations (4 instances, one sink)
#   pickle         fg-loadgen --format pickle -> fluxgate pickle listener -> forward -> fg-sink tcp
#   one-conn       as forward over 1 connection
#   translate      fg-loadgen -> fluxgate plaintext -> line protocol, gzip (defaults, flush 100ms)
#                  -> fg-sink http
#   http-write     16 HTTP clients POST line protocol to /write -> InfluxDB output -> fg-sink http
#   conn-64        translate over 64 connections
#   conn-512       translate over 512 connections
#   latency        translate at a steady RATE lines/s with the output's defaults (flush 1s):
#                  p50/p99 of fluxgate_write_latency_seconds (receipt -> upstream's ack)
#
# Per run: end-to-end lines/s (first write of the load generator to the last line the sink
# counted), CPU seconds of the process under test (utime+stime from /proc, before and after
# the load), peak RSS (VmHWM), lines lost (sent - counted, plus fluxgate's rejected/dropped).
# Medians of RUNS runs; runs of one round go path after path, so machine load hits all.
# Then one short run (CG_LINES lines) per path under `valgrind --tool=callgrind`, counters
# zeroed once the process listens: instructions per line, the figure that does not move
# with the machine's load.
#
# Settings (environment): LINES=2000000 CONNECTIONS=2 RUNS=3 NAMES=50000 RATE=100000
#   LATENCY_SECONDS=10 CG_LINES=100000 CALLGRIND=1 BUILD=1 PATHS="floor c-relay ..." (a subset)
#   PROFILE=0 (1: one more run per path under `perf record -e cpu-clock`; flat profiles in
#   $RESULTS/profile/<path>.txt, the recordings beside them as <path>.perf.data)
#   RUN_TIMEOUT=120 FLUXGATE=<binary> (another fluxgate build, e.g. to compare two commits)
# Smoke run: LINES=200000 RUNS=1 CALLGRIND=0 LATENCY_SECONDS=2 bash bench/all.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

LINES=${LINES:-2000000}
CONNECTIONS=${CONNECTIONS:-2}
RUNS=${RUNS:-3}
NAMES=${NAMES:-50000}
RATE=${RATE:-100000}
LATENCY_SECONDS=${LATENCY_SECONDS:-10}
CG_LINES=${CG_LINES:-100000}
CALLGRIND=${CALLGRIND:-1}
PROFILE=${PROFILE:-0}
BUILD=${BUILD:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
ALL_PATHS="floor c-relay forward carbon_ch pickle one-conn translate http-write conn-64 conn-512 latency"
PATHS=${PATHS:-$ALL_PATHS}
RESULTS=${RESULTS:-$ROOT/bench/results}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
FLUXGATE=${FLUXGATE:-$BIN/fluxgate}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

if [[ $BUILD == 1 ]]; then
    # Two invocations, as run.sh: the tools' dependency features must not leak into the
    # measured gateway.
    log "building fluxgate (release)"
    cargo build --release -q -p fluxgate
    log "building the benchmark tools (release)"
    cargo build --release -q -p fluxgate-bench --bins
fi
for b in fg-loadgen fg-sink fg-floor; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run without BUILD=0"
done
[[ -x $FLUXGATE ]] || die "$FLUXGATE is missing: run without BUILD=0"
command -v carbon-c-relay >/dev/null || die "carbon-c-relay not found: apt-get install carbon-c-relay"
if [[ $CALLGRIND == 1 ]]; then
    command -v valgrind >/dev/null || die "valgrind not found: apt-get install valgrind (or CALLGRIND=0)"
fi
mkdir -p "$RESULTS"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-bench-all.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/http_load.py" <<'EOF'
# HTTP /write load: CLIENTS keep-alive connections, each POSTing its pre-built bodies.
import http.client, sys, threading, time
port, clients, total, per_body = (int(a) for a in sys.argv[1:5])
per_client = total // clients
bodies = []
for c in range(clients):
    rows = [f"bench,client={c},n={i % 500} v={i}i {1700000000000000000 + i}" for i in range(per_body)]
    bodies.append(("\n".join(rows) + "\n").encode())
errors = []
def client(c):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    left = per_client + (total % clients if c == 0 else 0)
    while left > 0:
        n = min(left, per_body)
        body = bodies[c] if n == per_body else b"".join(bodies[c].splitlines(True)[:n])
        conn.request("POST", "/write?db=bench&precision=n", body=body)
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            errors.append(r.status)
        left -= n
threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
start = time.time_ns()
for t in threads: t.start()
for t in threads: t.join()
print(f"result start_unix_ns={start} errors={len(errors)}")
EOF

# fluxgate's config for a path: $1 = path, $2 = listener port, $3 = http port, $4 = sink address.
fluxgate_config() {
    local path=$1 port=$2 http=$3 sink=$4
    local -a all=("${@:4}")
    echo '[log]'
    echo 'level = "warn"'
    case $path in
    pickle) printf '[listeners.pickle]\ntcp = "127.0.0.1:%s"\n' "$port" ;;
    http-write) ;;
    *) printf '[listeners.plaintext]\ntcp = "127.0.0.1:%s"\n' "$port" ;;
    esac
    printf '[listeners.http]\naddress = "127.0.0.1:%s"\n' "$http"
    case $path in
    forward | pickle | one-conn)
        printf '[[outputs.graphite]]\nname = "sink"\nprotocol = "plaintext"\ncluster = "forward"\ndestinations = ["%s"]\n' "$sink"
        ;;
    carbon_ch)
        printf '[[outputs.graphite]]\nname = "sink"\nprotocol = "plaintext"\ncluster = "carbon_ch"\n'
        printf 'destinations = ["%s:a", "%s:b", "%s:c", "%s:d"]\n' "${all[@]}"
        ;;
    translate | conn-64 | conn-512 | latency)
        printf '[graphite]\ntemplates = ["servers.* .dc.host.measurement.field*"]\n'
        printf '[[outputs.influxdb]]\nname = "bench"\nurl = "http://%s"\n' "$sink"
        # A finite burst would otherwise measure the flush timer (see bench/README.md); the
        # latency path keeps every default.
        [[ $path == latency ]] || echo 'flush_interval = "100ms"'
        ;;
    http-write)
        printf '[[outputs.influxdb]]\nname = "bench"\nurl = "http://%s"\nflush_interval = "100ms"\n' "$sink"
        ;;
    esac
}

sink_mode() {
    case $1 in
    translate | http-write | conn-64 | conn-512 | latency) echo http ;;
    *) echo tcp ;;
    esac
}

connections_of() {
    case $1 in
    one-conn) echo 1 ;;
    conn-64) echo 64 ;;
    conn-512) echo 512 ;;
    http-write) echo 16 ;;
    *) echo "$CONNECTIONS" ;;
    esac
}

# p-quantile (0..1) of a Prometheus histogram: the upper bound of the first bucket holding it.
histogram_quantile() {
    local text=$1 name=$2 q=$3
    awk -v name="${name}_bucket" -v q="$q" '
        index($1, name "{") == 1 {
            match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
            n++; les[n] = le; counts[n] = $NF
        }
        END {
            if (n == 0 || counts[n] == 0) { print "na"; exit }
            for (i = 1; i <= n; i++) if (counts[i] >= q * counts[n]) { print les[i]; exit }
        }' <<<"$text"
}

# wait_listening PID PORT SECONDS: until PORT takes connections; fails at once if PID exits.
wait_listening() {
    local pid=$1 port=$2 deadline=$((SECONDS + $3))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.1
    done
}

# One run of one path. $1 = path, $2 = label, $3 = lines, $4 = 1 for callgrind.
# Prints "rate cpu_s rss_kib lost p50 p99 instructions".
run_path() {
    local path=$1 label=$2 lines=$3 cg=${4:-0}
    local dir=$WORK/$path-$label
    mkdir -p "$dir"
    local mode conns
    mode=$(sink_mode "$path")
    conns=$(connections_of "$path")
    local listeners=1
    [[ $path == carbon_ch ]] && listeners=4
    "$BIN/fg-sink" "$mode" --listen 127.0.0.1:0 --listeners "$listeners" --expect "$lines" --idle-exit 30 --progress 0 \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "fg-sink to listen" 5 grep -q '^listening ' "$dir/sink.out" || die "fg-sink did not start"
    local sink_addr port http pid
    sink_addr=$(awk '/^listening /{print $3; exit}' "$dir/sink.out")
    # carbon_ch: four destinations, four sockets of one sink.
    local -a sink_addrs
    read -r -a sink_addrs < <(awk '/^listening /{$1 = $2 = ""; print; exit}' "$dir/sink.out")
    port=$(free_port)
    http=$(free_port)
    while [[ $http == "$port" ]]; do http=$(free_port); done
    local -a wrap=()
    if [[ $cg == 1 ]]; then
        wrap=(valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out.%p" -q)
    fi
    case $path in
    floor)
        "${wrap[@]}" "$BIN/fg-floor" --listen "127.0.0.1:$port" --upstream "$sink_addr" \
            >"$dir/proc.log" 2>&1 &
        ;;
    c-relay)
        printf 'cluster sink\n    forward\n        %s\n    ;\nmatch *\n    send to sink\n    ;\n' \
            "$sink_addr" >"$dir/relay.conf"
        "${wrap[@]}" carbon-c-relay -f "$dir/relay.conf" -p "$port" -w 2 -b 10000 -q 4000000 -s \
            >"$dir/proc.log" 2>&1 &
        ;;
    *)
        fluxgate_config "$path" "$port" "$http" "${sink_addrs[@]}" >"$dir/fluxgate.toml"
        "${wrap[@]}" "$FLUXGATE" run --config "$dir/fluxgate.toml" >"$dir/proc.log" 2>&1 &
        ;;
    esac
    pid=$!
    PIDS+=("$pid")
    local listen_port=$port
    [[ $path == http-write ]] && listen_port=$http
    if [[ $path == c-relay ]]; then
        # carbon-c-relay 3.7.3 may crash (segfault, seen in dmesg) on a connection that closes
        # without sending, so it is not probed: its log says when it listens.
        wait_for "carbon-c-relay to listen" 30 grep -q 'listening on tcp4' "$dir/proc.log" ||
            die "carbon-c-relay did not start: $(tail -5 "$dir/proc.log")"
    fi
    [[ $path == c-relay ]] || wait_listening "$pid" "$listen_port" 60 ||
        die "$path did not start: $(tail -5 "$dir/proc.log")"
    if [[ $cg == 1 ]]; then
        # Count from here: start-up is not per line.
        callgrind_control -z "$pid" >/dev/null 2>&1 || log "callgrind_control -z failed for $path"
    fi
    local perf_pid=
    if [[ $cg == perf ]]; then
        perf record -q -e cpu-clock -F 1999 -p "$pid" -o "$dir/perf.data" 2>"$dir/perf.err" &
        perf_pid=$!
        sleep 0.5
    fi
    local cpu0
    cpu0=$(proc_cpu_seconds "$pid")
    local start_ns errors=0
    case $path in
    http-write)
        "$PYTHON" "$WORK/http_load.py" "$http" "$conns" "$lines" 5000 >"$dir/load.out" 2>"$dir/load.err" ||
            die "HTTP load failed: $(cat "$dir/load.err")"
        start_ns=$(kv "$(grep '^result ' "$dir/load.out")" start_unix_ns)
        errors=$(kv "$(grep '^result ' "$dir/load.out")" errors)
        ;;
    *)
        local -a extra=()
        [[ $path == pickle ]] && extra+=(--format pickle)
        [[ $path == latency ]] && extra+=(--rate "$RATE" --write-bytes 4096)
        "$BIN/fg-loadgen" --addr "127.0.0.1:$port" --lines "$lines" --connections "$conns" \
            --names "$NAMES" --wait-close 0 "${extra[@]}" >"$dir/load.out" 2>"$dir/load.err" ||
            die "fg-loadgen failed ($path): $(cat "$dir/load.err"); $path's log: $(tail -5 "$dir/proc.log")"
        start_ns=$(kv "$(grep '^result ' "$dir/load.out")" start_unix_ns)
        ;;
    esac
    wait_pid "$sink_pid" "$RUN_TIMEOUT" || true
    local rss cpu1 metrics="" rejected=0 dropped=0
    rss=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status" 2>/dev/null) || die "$path exited during the run: $(tail -5 "$dir/proc.log")"
    cpu1=$(proc_cpu_seconds "$pid")
    case $path in
    floor | c-relay) ;;
    *)
        # The sink's last answer may still be on its way back: let the counters settle.
        local deadline=$((SECONDS + 5)) sent=0
        while :; do
            metrics=$(http_get "127.0.0.1:$http" /metrics 2>/dev/null || true)
            sent=$(prom_sum "$metrics" fluxgate_sent_points_total)
            [[ $sent -ge $lines || $SECONDS -ge $deadline ]] && break
            sleep 0.1
        done
        rejected=$(prom_sum "$metrics" fluxgate_rejected_total)
        dropped=$(prom_sum "$metrics" fluxgate_dropped_total)
        printf '%s\n' "$metrics" >"$dir/metrics.prom"
        ;;
    esac
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        mkdir -p "$RESULTS/profile"
        perf report -i "$dir/perf.data" --no-children --sort symbol --stdio --percent-limit 0.7 \
            2>/dev/null | grep -v '^$' | grep -v '^#' >"$RESULTS/profile/$path.txt" || true
        # Kept for `perf annotate -i $RESULTS/profile/<path>.perf.data <symbol>`.
        mv "$dir/perf.data" "$RESULTS/profile/$path.perf.data" 2>/dev/null || true
    fi
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local instructions=na
    if [[ $cg == 1 ]]; then
        # Everything since the reset: the load and the (short) shutdown.
        instructions=$(cat "$dir"/callgrind.out.* 2>/dev/null | awk '/^totals:/ {s += $2} END {print s + 0}')
    fi
    local sink last_ns points
    sink=$(grep '^result ' "$dir/sink.out" | tail -1) || die "$path: no result from fg-sink: $(cat "$dir/sink.err")"
    last_ns=$(kv "$sink" last_unix_ns)
    points=$(kv "$sink" points)
    local lost=$((lines - points + rejected + dropped + errors))
    local p50=- p99=-
    if [[ $path == latency ]]; then
        p50=$(histogram_quantile "$metrics" fluxgate_write_latency_seconds 0.50)
        p99=$(histogram_quantile "$metrics" fluxgate_write_latency_seconds 0.99)
    fi
    mkdir -p "$RESULTS/all/$path-$label"
    cp "$dir"/*.out "$dir"/*.err "$dir"/*.log "$dir"/*.toml "$dir"/*.prom "$dir"/callgrind.out.* \
        "$RESULTS/all/$path-$label/" 2>/dev/null || true
    awk -v l="$lines" -v a="$start_ns" -v b="$last_ns" -v c0="$cpu0" -v c1="$cpu1" -v r="$rss" \
        -v lost="$lost" -v p50="$p50" -v p99="$p99" -v ins="$instructions" \
        'BEGIN { rate = (b > a) ? l / ((b - a) / 1e9) : 0
                 printf "%.0f %.2f %d %d %s %s %s\n", rate, c1 - c0, r, lost, p50, p99, ins }'
}

declare -A RATE_OF CPU_OF RSS_OF LOST_OF P50_OF P99_OF INS_OF
busy=$(cpu_busy 2)
log "machine busy before the runs: $busy% of $(nproc) cores (other processes)"
for ((n = 1; n <= RUNS; n++)); do
    for path in $PATHS; do
        lines=$LINES
        [[ $path == latency ]] && lines=$((RATE * LATENCY_SECONDS))
        read -r rate cpu rss lost p50 p99 _ < <(run_path "$path" "$n" "$lines")
        cpu_m=$(awk -v c="$cpu" -v l="$lines" 'BEGIN { printf "%.3f", c / (l / 1e6) }')
        RATE_OF[$path]+="$rate "
        CPU_OF[$path]+="$cpu_m "
        RSS_OF[$path]+="$rss "
        LOST_OF[$path]+="$lost "
        P50_OF[$path]+="$p50 "
        P99_OF[$path]+="$p99 "
        log "run $n $path: $rate lines/s, $cpu_m CPU-s/M lines, peak RSS $((rss / 1024)) MiB, lost $lost$([[ $p99 == - ]] || echo ", write latency p50 $p50 s, p99 $p99 s")"
    done
done
if [[ $CALLGRIND == 1 ]]; then
    for path in $PATHS; do
        # carbon-c-relay 3.7.3 does not survive callgrind's counter reset here; the
        # connection-count paths run the translate path's code.
        [[ $path == latency || $path == conn-512 || $path == conn-64 || $path == c-relay ]] && continue
        read -r _ _ _ _ _ _ ins < <(run_path "$path" callgrind "$CG_LINES" 1)
        INS_OF[$path]=$(awk -v i="$ins" -v l="$CG_LINES" 'BEGIN { if (i + 0 > 0) printf "%.0f", i / l; else print "na" }')
        log "callgrind $path: ${INS_OF[$path]} instructions per line"
    done
fi
if [[ $PROFILE == 1 ]]; then
    command -v perf >/dev/null || die "perf not found: apt-get install linux-perf (or PROFILE=0)"
    for path in $PATHS; do
        [[ $path == floor || $path == latency ]] && continue
        run_path "$path" profile "$LINES" perf >/dev/null
        log "profile of $path: $RESULTS/profile/$path.txt"
    done
fi
busy_after=$(cpu_busy 2)

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "na") printf "%.2f", a / b; else print "-" }'; }
total_lost() { tr ' ' '\n' <<<"$1" | awk '{ s += $1 } END { print s + 0 }'; }
declare -A MRATE MCPU
for path in $PATHS; do
    MRATE[$path]=$(med "${RATE_OF[$path]:-}")
    MCPU[$path]=$(med "${CPU_OF[$path]:-}")
done
ref_rate() { [[ -n ${MRATE[$1]:-} ]] && echo "${MRATE[$1]}" || echo 0; }
ref_cpu() { [[ -n ${MCPU[$1]:-} ]] && echo "${MCPU[$1]}" || echo 0; }

describe() {
    case $1 in
    floor) echo "byte-copy floor (fg-floor)" ;;
    c-relay) echo "carbon-c-relay $(carbon-c-relay -v 2>&1 | awk '/carbon-c-relay/{print $2; exit}'), forward" ;;
    forward) echo "fluxgate relay, plaintext forward" ;;
    carbon_ch) echo "fluxgate relay, carbon_ch over 4" ;;
    pickle) echo "fluxgate pickle in -> relay" ;;
    one-conn) echo "fluxgate relay, one sender connection" ;;
    translate) echo "fluxgate Graphite -> line protocol, gzip" ;;
    http-write) echo "fluxgate HTTP /write -> InfluxDB output (16 conns)" ;;
    conn-64) echo "fluxgate translate, 64 connections" ;;
    conn-512) echo "fluxgate translate, 512 connections" ;;
    latency) echo "fluxgate translate at $RATE lines/s steady, default flush" ;;
    esac
}
note() {
    case $1 in
    forward | one-conn | pickle) echo "$(awk -v a="${MRATE[$1]}" -v b="$(ref_rate floor)" 'BEGIN { if (b > 0) printf "%.0f%% of floor rate", 100 * a / b }'), $(ratio "${MRATE[$1]}" "$(ref_rate c-relay)")x c-relay rate, $(ratio "${MCPU[$1]}" "$(ref_cpu c-relay)")x c-relay CPU" ;;
    carbon_ch) echo "$(ratio "${MCPU[$1]}" "$(ref_cpu forward)")x forward CPU/line" ;;
    c-relay) echo "$(ratio "${MCPU[$1]}" "$(ref_cpu floor)")x floor CPU/line" ;;
    conn-512) echo "$(ratio "${MRATE[$1]}" "$(ref_rate conn-64)")x the rate of 64 connections" ;;
    latency) echo "write latency p50 $(med "${P50_OF[$1]:-}") s, p99 $(med "${P99_OF[$1]:-}") s (bucket bounds)" ;;
    *) echo "" ;;
    esac
}

{
    echo "## fluxgate benchmarks: all paths, one run"
    echo
    echo "Command: \`LINES=$LINES CONNECTIONS=$CONNECTIONS RUNS=$RUNS RATE=$RATE CG_LINES=$CG_LINES bash bench/all.sh\`"
    echo "Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo); other processes kept it $busy% busy before and $busy_after% after; $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "Medians of $RUNS runs. CPU-s/M = CPU seconds (utime+stime) of the process under test per million lines; instr/line from one $CG_LINES-line run under callgrind. Rates move with the machine's load; CPU per line less, but on a shared host it moves too: compare paths within one run, against its floor."
    echo
    echo "| path | lines/s | CPU-s/M | instr/line | peak RSS MiB | lost | note |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for path in $PATHS; do
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(describe "$path")" "${MRATE[$path]}" "${MCPU[$path]}" \
            "${INS_OF[$path]:--}" "$(awk -v k="$(med "${RSS_OF[$path]:-}")" 'BEGIN { printf "%.1f", k / 1024 }')" \
            "$(total_lost "${LOST_OF[$path]:-}")" "$(note "$path")"
    done
} | tee "$RESULTS/all-latest.md"

for path in $PATHS; do
    [[ $(total_lost "${LOST_OF[$path]:-}") == 0 ]] || die "$path lost lines (see $RESULTS/all/)"
done
