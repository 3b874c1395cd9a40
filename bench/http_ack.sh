#!/usr/bin/env bash
# HTTP writes: `ack = "delivered"` against `ack = "queued"` in one run.
#
# Scenario: CLIENTS concurrent HTTP clients (Python, keep-alive) each POST REQUESTS bodies of
# LINES_PER_BODY lines of line protocol to fluxgate's /write; fluxgate delivers to a counting
# sink (fg-sink). For each ack mode, ROUNDS runs alternate which mode goes first; each run
# starts a fresh sink and gateway and reports lines/s (first request sent to last point
# counted by the sink) and the gateway's CPU seconds per million lines (utime+stime), which
# does not move with machine load the way rates do. Prints the medians and the ratio.
#
# Settings: CLIENTS=16 LINES_PER_BODY=5000 REQUESTS=25 ROUNDS=3 BUILD=1
#   TLS=1: the HTTP listener serves HTTPS (a certificate made with openssl for the run) and the
#   clients connect with TLS: the cost of TLS on the write path.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

CLIENTS=${CLIENTS:-16}
LINES_PER_BODY=${LINES_PER_BODY:-5000}
REQUESTS=${REQUESTS:-25}
ROUNDS=${ROUNDS:-3}
BUILD=${BUILD:-1}
TLS=${TLS:-0}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3
TOTAL=$((CLIENTS * LINES_PER_BODY * REQUESTS))

if [[ $BUILD == 1 ]]; then
    cargo build --release -p fluxgate
    cargo build --release -p fluxgate-bench --bins
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fluxgate-bench-ack.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

TLS_KEYS=
if [[ $TLS == 1 ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
        >/dev/null 2>&1 || die "openssl could not make a certificate"
    TLS_KEYS="tls_cert = \"$WORK/cert.pem\"
tls_key = \"$WORK/key.pem\""
fi

cat >"$WORK/load.py" <<'EOF'
import http.client, ssl, sys, threading, time
port, clients, lines, requests, tls = (int(a) for a in sys.argv[1:6])
bodies = []
for c in range(clients):
    rows = [f"bench,client={c},n={i % 500} v={i}i {1700000000000000000 + i}" for i in range(lines)]
    bodies.append(("\n".join(rows) + "\n").encode())
errors = []
def client(c):
    if tls:
        ctx = ssl.create_default_context(cafile=sys.argv[6])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=ctx)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(requests):
        conn.request("POST", "/write?db=bench&precision=n", body=bodies[c])
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            errors.append(r.status)
threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
start = time.time_ns()
for t in threads: t.start()
for t in threads: t.join()
print(f"result start_unix_ns={start} errors={len(errors)}")
EOF

run_once() {
    local ack=$1 dir=$WORK/$1-$2
    mkdir -p "$dir"
    "$BIN/fg-sink" http --listen 127.0.0.1:0 --expect "$TOTAL" --idle-exit 30 \
        >"$dir/sink.out" 2>"$dir/sink.err" &
    local sink_pid=$!
    PIDS+=("$sink_pid")
    wait_for "fg-sink to listen" 5 grep -q '^listening ' "$dir/sink.out"
    local sink_addr http_port
    sink_addr=$(awk '/^listening /{print $3; exit}' "$dir/sink.out")
    http_port=$(free_port)
    cat >"$dir/fluxgate.toml" <<EOF
[log]
level = "warn"
[listeners.http]
address = "127.0.0.1:$http_port"
ack = "$ack"
$TLS_KEYS
[[outputs.influxdb]]
name = "bench"
url = "http://$sink_addr"
flush_interval = "100ms"
EOF
    "$BIN/fluxgate" run --config "$dir/fluxgate.toml" >"$dir/fluxgate.log" 2>&1 &
    local fg_pid=$!
    PIDS+=("$fg_pid")
    local scheme=http
    [[ $TLS == 1 ]] && scheme=https
    wait_for "fluxgate /health" 15 curl -sf --cacert "$WORK/cert.pem" "$scheme://127.0.0.1:$http_port/health" -o /dev/null ||
        die "fluxgate did not start: $(cat "$dir/fluxgate.log")"
    "$PYTHON" "$WORK/load.py" "$http_port" "$CLIENTS" "$LINES_PER_BODY" "$REQUESTS" "$TLS" "$WORK/cert.pem" >"$dir/load.out"
    wait_pid "$sink_pid" 120 || true
    local cpu
    cpu=$(proc_cpu_seconds "$fg_pid")
    kill -TERM "$fg_pid" 2>/dev/null || true
    wait "$fg_pid" 2>/dev/null || true
    PIDS=()
    local gen sink start last points errors
    gen=$(grep '^result ' "$dir/load.out")
    sink=$(grep '^result ' "$dir/sink.out") || die "no result from fg-sink ($ack)"
    start=$(kv "$gen" start_unix_ns)
    errors=$(kv "$gen" errors)
    last=$(kv "$sink" last_unix_ns)
    points=$(kv "$sink" points)
    [[ $points -eq $TOTAL && $errors -eq 0 ]] ||
        die "$ack: sink counted $points of $TOTAL, $errors refused writes"
    local rate cpu_m
    rate=$(awk -v p="$points" -v s="$start" -v l="$last" 'BEGIN{printf "%d", p / ((l - s) / 1e9)}')
    cpu_m=$(awk -v c="$cpu" -v p="$points" 'BEGIN{printf "%.3f", c / (p / 1e6)}')
    log "$ack: $rate lines/s, $cpu_m CPU-s per million lines"
    printf '%s\t%s\t%s\n' "$ack" "$rate" "$cpu_m" >>"$WORK/rows.tsv"
}

log "$CLIENTS clients x $REQUESTS bodies x $LINES_PER_BODY lines = $TOTAL lines per run, $ROUNDS rounds, TLS=$TLS"
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then run_once queued "$r"; run_once delivered "$r"
    else run_once delivered "$r"; run_once queued "$r"; fi
done
med() { awk -F'\t' -v a="$1" -v c="$2" '$1 == a {print $c}' "$WORK/rows.tsv" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
q_rate=$(med queued 2); d_rate=$(med delivered 2)
q_cpu=$(med queued 3); d_cpu=$(med delivered 3)
echo
echo "| ack | median lines/s | median CPU-s per million lines |"
echo "|---|---:|---:|"
echo "| queued | $q_rate | $q_cpu |"
echo "| delivered | $d_rate | $d_cpu |"
awk -v q="$q_rate" -v d="$d_rate" 'BEGIN{printf "\ndelivered / queued rate: %.0f%% (target >= 80%%)\n", 100 * d / q}'
