# Helpers for the benchmark scripts (sourced, not run).

log() { echo "bench: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# A free loopback TCP port. The kernel picks it (port 0), so two calls rarely collide; the
# port is free when printed, and the gateway binds it a moment later.
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# http_get HOST:PORT PATH: the body of a GET, failing on a non-2xx status.
http_get() {
    local hostport=$1 path=$2
    if command -v curl >/dev/null; then
        curl -fsS --max-time 5 "http://$hostport$path"
        return
    fi
    local host=${hostport%:*} port=${hostport##*:} status
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
    local resp
    resp=$(timeout 5 cat <&3)
    exec 3<&-
    status=$(head -1 <<<"$resp" | awk '{print $2}')
    [[ $status == 2* ]] || return 1
    sed '1,/^\r\{0,1\}$/d' <<<"$resp"
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [[ $SECONDS -ge $deadline ]]; then
            log "timed out after ${secs}s waiting for $what"
            return 1
        fi
        sleep 0.1
    done
}

# wait_pid PID SECONDS: wait for a background process to exit; kill it if it takes longer.
wait_pid() {
    local pid=$1 deadline=$((SECONDS + $2))
    while kill -0 "$pid" 2>/dev/null; do
        if [[ $SECONDS -ge $deadline ]]; then
            log "process $pid still running after $2 s: stopping it"
            kill "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.05
    done
}

# prom_sum TEXT NAME: the sum of every sample of a Prometheus metric (0 if absent).
prom_sum() {
    awk -v name="$2" '
        $1 == name || index($1, name "{") == 1 { s += $NF }
        END { printf "%.0f\n", s }' <<<"$1"
}

# kv LINE KEY: the value of KEY in a `key=value key=value` line.
kv() {
    tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print substr($0, length(k) + 2); exit }'
}

# proc_cpu_seconds PID: user + system CPU seconds of a running process (all threads).
proc_cpu_seconds() {
    local ticks
    ticks=$(getconf CLK_TCK 2>/dev/null || echo 100)
    sed 's/.*) //' "/proc/$1/stat" | awk -v t="$ticks" '{printf "%.2f\n", ($12 + $13) / t}'
}

# thread_cpu PID: CPU seconds per thread of a running process, busiest first.
thread_cpu() {
    local ticks t
    ticks=$(getconf CLK_TCK 2>/dev/null || echo 100)
    for t in /proc/"$1"/task/*; do
        printf '%s\t%s\n' "$(sed 's/.*) //' "$t/stat" | awk -v t="$ticks" '{printf "%.2f", ($12 + $13) / t}')" \
            "$(cat "$t/comm")"
    done | sort -rn
}

# cpu_busy SECONDS: how busy the whole machine was over an interval, in percent of all CPUs
# (100 = every core busy). Before a run this is other people's load, which the benchmark
# competes with.
cpu_busy() {
    local a b
    a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN{split(a, x, " "); split(b, y, " ");
        t = y[2] - x[2]; printf "%.0f\n", (t > 0) ? 100 * (y[1] - x[1]) / t : 0}'
}

# wait_quiet MAX_PERCENT SECONDS: wait (up to SECONDS) until the machine is at most
# MAX_PERCENT busy over one second; prints the last reading.
wait_quiet() {
    local max=$1 deadline=$((SECONDS + $2)) busy
    while :; do
        busy=$(cpu_busy 1)
        if [[ $busy -le $max || $SECONDS -ge $deadline ]]; then
            echo "$busy"
            return
        fi
    done
}

# median: the median of the numbers on stdin, one per line.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "na"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}
