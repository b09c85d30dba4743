#!/usr/bin/env bash
# Forged-signature benchmark: the signature check of a forged 4 MiB ASCII body against forged
# 4 MiB non-ASCII bodies (raw MAC, then Meta's escaped form), median of alternating rounds;
# see bench/signature.rs. Single-threaded, a few seconds.
#
# Usage, from the repo root:  bench/signature.sh
#   BENCH_BYTES=4194304   body size
#   BENCH_ROUNDS=15       measured rounds (medians)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
cargo build --release --example signature_bench >&2
echo "replyd signature bench — $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
exec "$root/target/release/examples/signature_bench"
