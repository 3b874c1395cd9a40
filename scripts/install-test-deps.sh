#!/usr/bin/env bash
# Installs what fluxgate's end-to-end tests need and a fresh Debian 12 machine lacks:
#   - the real servers the tests start on loopback ports: InfluxDB 1.x (influxd), carbon-cache,
#     carbon-relay and whisper-fetch (graphite-carbon), carbon-c-relay;
#   - VictoriaMetrics (victoria-metrics), a second real InfluxDB-write-compatible store;
#   - the InfluxDB 1.x command-line client the tests drive like a user would (influx, from
#     influxdb-client);
#   - the real Python client libraries (scripts/requirements-test.txt) in <repo>/.venv;
#   - nats-server (JetStream), the stream between edges and deliverers;
#   - Etsy statsd 0.9 (tests/statsd/package.json), the StatsD listener's reference, installed
#     with npm into tests/statsd/node_modules.
#
# Idempotent and silent when everything is already in place. Debian packages are installed only
# when running as root; otherwise the script says what to install and fails.
#
# Environment:
#   FLUXGATE_VENV_PYTHON  interpreter to build the virtualenv with (default: the first `python3`
#                         on PATH that has venv and ensurepip, else /usr/bin/python3)
#   FLUXGATE_VENV         where to put the virtualenv (default: <repo>/.venv)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo/scripts/requirements-test.txt"
venv="${FLUXGATE_VENV:-$repo/.venv}"
stamp="$venv/.fluxgate-requirements.sha256"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Binaries the tests start, and the Debian package each comes from.
declare -A package_of=(
    [influxd]=influxdb
    [carbon-cache]=graphite-carbon
    [carbon-relay]=graphite-carbon
    [whisper-fetch]=graphite-carbon
    [carbon-c-relay]=carbon-c-relay
    [influx]=influxdb-client
    [systemd-analyze]=systemd
    [node]=nodejs
    [npm]=npm
    [nats-server]=nats-server
    [victoria-metrics]=victoria-metrics
)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

# An interpreter that can create a virtualenv with pip in it.
venv_capable() { "$1" -c 'import venv, ensurepip' >/dev/null 2>&1; }

pick_python() {
    local candidate
    for candidate in ${FLUXGATE_VENV_PYTHON:-} python3 /usr/bin/python3; do
        if have "$candidate" && venv_capable "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------------
missing_packages=()
for binary in "${!package_of[@]}"; do
    if ! have "$binary"; then
        missing_packages+=("${package_of[$binary]}")
    fi
done
# carbon-relay's hashing reference and whisper-fetch run on Debian's own interpreter.
if have carbon-cache && ! /usr/bin/python3 -c 'import carbon, whisper' >/dev/null 2>&1; then
    missing_packages+=(graphite-carbon)
fi
if ! pick_python >/dev/null; then
    missing_packages+=(python3 python3-venv)
fi
if [ "${#missing_packages[@]}" -gt 0 ]; then
    mapfile -t missing_packages < <(printf '%s\n' "${missing_packages[@]}" | sort -u)
fi

if [ "${#missing_packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing_packages[*]}
    install them with:  sudo apt-get install -y --no-install-recommends ${missing_packages[*]}
    (or run this script as root)"
    fi
    have apt-get || die "apt-get not found; install ${missing_packages[*]} with your package manager"

    log "installing ${missing_packages[*]}"
    # The packaged services (influxdb on :8086/:8088, carbon-cache and carbon-c-relay on
    # :2003/:2004) must not start: tests run their own instances and a system daemon would only
    # hold ports and CPU. policy-rc.d vetoes starts during installation; an existing policy is
    # left untouched.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap '[ "$own_policy" -eq 1 ] && rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends influxdb influxdb-client graphite-carbon \
        carbon-c-relay "${missing_packages[@]}" >/dev/null
    if [ "$own_policy" -eq 1 ]; then
        rm -f "$policy"
        own_policy=0
    fi

    # Keep the newly installed ones from starting at boot too (a service that was already
    # installed is the machine owner's business). systemd stops only the unit's own processes; the
    # sysvinit scripts are NOT used to stop anything, because carbon-cache's falls back to
    # killing every process running /usr/bin/carbon-cache, test instances included.
    declare -A service_of=([influxdb]=influxdb [graphite-carbon]=carbon-cache [carbon-c-relay]=carbon-c-relay)
    for package in "${missing_packages[@]}"; do
        service="${service_of[$package]:-}"
        [ -n "$service" ] || continue
        if [ -d /run/systemd/system ] && have systemctl; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        elif have update-rc.d; then
            update-rc.d "$service" disable >/dev/null 2>&1 || true
        fi
    done

    for binary in "${!package_of[@]}"; do
        have "$binary" || die "$binary still missing after installing ${package_of[$binary]}"
    done
fi

# ---------------------------------------------------------------------------------------------
# 2. Etsy statsd (npm), pinned by tests/statsd/package.json
# ---------------------------------------------------------------------------------------------
statsd_dir="$repo/tests/statsd"
if [ ! -d "$statsd_dir/node_modules/statsd" ]; then
    log "installing Etsy statsd into ${statsd_dir#"$repo"/}/node_modules"
    (cd "$statsd_dir" && npm install --silent --no-audit --no-fund --omit=optional) \
        || die "npm install in $statsd_dir failed"
    [ -f "$statsd_dir/node_modules/statsd/stats.js" ] || die "statsd missing after npm install"
fi

# ---------------------------------------------------------------------------------------------
# 3. Python virtualenv with the client libraries
# ---------------------------------------------------------------------------------------------
[ -f "$requirements" ] || die "$requirements not found"

requirements_hash="$(sha256sum "$requirements" | cut -d' ' -f1)"
# The stamp names the requirements and the interpreter they were installed for.
venv_stamp() { printf '%s %s\n' "$requirements_hash" "$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"; }

# A venv whose base interpreter moved or was removed is rebuilt rather than patched.
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "rebuilding broken virtualenv $venv"
    rm -rf "$venv"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(venv_stamp)" ]; then
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    python="$(pick_python)" || die "no python3 with venv and ensurepip (apt-get install python3-venv)"
    log "creating virtualenv $venv with $python"
    "$python" -m venv "$venv"
fi
log "installing Python test clients from ${requirements#"$repo"/}"
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$requirements"
# Importing proves the pins work together on this interpreter; only then is the stamp written.
"$venv/bin/python" -W ignore -c 'import aioinflux, influxdb, influxdb_client, aiographite' \
    || die "client libraries installed but do not import; see the traceback above"
venv_stamp >"$stamp"
log "ready: $venv"
