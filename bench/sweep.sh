#!/usr/bin/env bash
# Sweep benchmark: one reconcile sweep over 1 k pending candidates beside 100 k and 5 M messages
# of answered history (SQLite), median of several runs; see bench/sweep.rs for what it measures.
#
# Usage, from the repo root:  bench/sweep.sh
#   BENCH_HISTORY=100000,5000000   history sizes, one database each
#   BENCH_PENDING=1000             pending candidates
#   BENCH_PER_CONVERSATION=20      history messages per conversation
#   BENCH_RUNS=7                   measured runs per size (medians)
#   BENCH_DIR=                     keep the databases there (default: a temp dir, removed)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo build --release --example sweep_bench >&2
echo "replyd sweep bench — $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
exec "$root/target/release/examples/sweep_bench"
