#!/usr/bin/env bash
# fluxgate's main job on a fresh machine: a local InfluxDB 1.x, the gateway in front of it,
# a little Graphite (plaintext and pickle) and InfluxDB traffic, and the data queried back.
# Everything runs on loopback in a temporary directory and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v influxd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing InfluxDB 1.x (Debian package influxdb)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends influxdb >/dev/null
  else
    echo "influxd not found: install it with 'sudo apt-get install influxdb'" >&2
    exit 1
  fi
fi
command -v curl >/dev/null || { echo "curl not found: apt-get install curl" >&2; exit 1; }

echo "== building fluxgate (release)"
cargo build --release -q -p fluxgate
BIN=target/release/fluxgate

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DIR=$(mktemp -d)
INFLUX_PORT=$(free_port); RPC_PORT=$(free_port); HTTP_PORT=$(free_port); PLAIN_PORT=$(free_port); PICKLE_PORT=$(free_port)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

cat > "$DIR/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$RPC_PORT"
[meta]
  dir = "$DIR/meta"
[data]
  dir = "$DIR/data"
  wal-dir = "$DIR/wal"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
CONF
influxd -config "$DIR/influxdb.conf" >"$DIR/influxd.log" 2>&1 & PIDS+=($!)

cat > "$DIR/fluxgate.toml" <<CONF
[listeners.plaintext]
tcp = "127.0.0.1:$PLAIN_PORT"
udp = "127.0.0.1:$PLAIN_PORT"
[listeners.pickle]
tcp = "127.0.0.1:$PICKLE_PORT"
[listeners.http]
address = "127.0.0.1:$HTTP_PORT"
[graphite]
templates = ["servers.* .dc.host.measurement.field*", "measurement*"]
tags = ["source=graphite"]
[[outputs.influxdb]]
name = "influx"
url = "http://127.0.0.1:$INFLUX_PORT"
database = "graphite"
flush_interval = "200ms"
CONF
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; return 1; }
wait_http "http://127.0.0.1:$INFLUX_PORT/ping"
"$BIN" run --config "$DIR/fluxgate.toml" 2>"$DIR/fluxgate.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$HTTP_PORT/health"
echo "== InfluxDB on :$INFLUX_PORT, fluxgate on :$PLAIN_PORT (plaintext) :$PICKLE_PORT (pickle) :$HTTP_PORT (http)"

GW="http://127.0.0.1:$HTTP_PORT"
# The InfluxDB output creates its own database ("graphite"); a client creates the one it
# writes to through the gateway, as it would against InfluxDB.
echo "== CREATE DATABASE web through the gateway's /query"
curl -s -XPOST "$GW/query" --data-urlencode 'q=CREATE DATABASE web' >/dev/null

NOW=$(date +%s)
echo "== Graphite plaintext over TCP"
python3 - "$PLAIN_PORT" "$NOW" <<'PY'
import socket, sys
port, now = int(sys.argv[1]), int(sys.argv[2])
lines = []
for host in ("web01", "web02"):
    for i, field in enumerate(("user", "system", "idle")):
        lines.append(f"servers.dc1.{host}.cpu.{field} {10 + i}.5 {now}\n")
lines.append("this line is malformed\n")
s = socket.create_connection(("127.0.0.1", port)); s.sendall("".join(lines).encode()); s.close()
PY
echo "== Graphite pickle (protocol 2, as carbon-relay sends)"
python3 - "$PICKLE_PORT" "$NOW" <<'PY'
import pickle, socket, struct, sys
port, now = int(sys.argv[1]), int(sys.argv[2])
payload = pickle.dumps([("servers.dc2.db01.disk.used", (now, 71.0)), ("app.requests", (now, 1234))], protocol=2)
s = socket.create_connection(("127.0.0.1", port)); s.sendall(struct.pack("!L", len(payload)) + payload); s.close()
PY
echo "== InfluxDB line protocol over HTTP (/write, precision=s)"
curl -s -o /dev/null -w "   /write answered %{http_code}\n" -XPOST "$GW/write?db=web&precision=s" \
  --data-binary "http_requests,service=api,code=200 count=42i $NOW"

sleep 1
echo "== queried back from InfluxDB (through the gateway's /query proxy)"
show() {
  curl -s -G "$GW/query" --data-urlencode "db=$1" --data-urlencode "q=$2" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["results"]:
    for s in r.get("series", []):
        cols = s["columns"]
        for v in s["values"]:
            row = {c: x for c, x in zip(cols, v) if x is not None}
            t = row.pop("time")
            name = s["name"]
            print(f"   {name:<14} {t}  " + "  ".join(f"{k}={row[k]}" for k in sorted(row)))
'
}
show graphite 'SELECT * FROM cpu, disk, "app.requests"'
show web 'SELECT * FROM http_requests'
echo "== gateway metrics"
curl -s "$GW/metrics" | grep -E '^fluxgate_(received|rejected|sent_points|queue_points)'
