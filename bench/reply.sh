#!/usr/bin/env bash
# Reply benchmark (see bench/reply.rs): builds replyd and the driver in release mode, then runs.
#   BENCH_MESSAGES=10000   messages in the zero-latency scenario
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --bin replyd --example reply >&2
target=${CARGO_TARGET_DIR:-target}
echo "replyd reply bench — $(date -u '+%F %T UTC'), $(nproc) CPUs, commit $(git rev-parse --short HEAD 2>/dev/null || echo -)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
BENCH_REPLYD_BIN=${BENCH_REPLYD_BIN:-$target/release/replyd} exec "$target/release/examples/reply"
