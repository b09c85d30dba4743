#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs and starts what the tests need
# (PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379, Chromium and chromedriver for the
# console's browser test), then `cargo test`.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif have sudo; then sudo "$@"; else "$@"; fi; }

ensure_packages() {
    local missing=()
    have pg_ctlcluster || missing+=(postgresql)
    have redis-server || missing+=(redis-server)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Debian's Chromium and its WebDriver, for the console's browser test (tests/it/console.rs).
ensure_browser() {
    have chromium && have chromedriver && return 0
    echo "installing chromium chromium-driver" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_postgres() {
    port_open 5432 && return 0
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 50); do port_open 5432 && break; sleep 0.2; done
    # Trust auth and a `test` database, as on the development machines.
    as_root su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 || createdb test" || true
}

ensure_redis() {
    port_open 6379 && return 0
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 50); do port_open 6379 && break; sleep 0.2; done
}

if [ "${REPLYD_TEST_SKIP_SERVICES:-0}" != 1 ]; then
    ensure_packages
    ensure_postgres
    ensure_redis
fi

if [ "${REPLYD_TEST_SKIP_BROWSER:-0}" != 1 ]; then
    ensure_browser
fi

exec cargo test --locked "$@"
