#!/usr/bin/env bash
# Durable-ingest benchmark: `replyd serve` (SQLite, fresh database per run) against a bare axum
# server that answers 200 to everything, same machine, same run, rounds alternating the two.
#
# Usage, from the repo root:  bench/ingest.sh
#   BENCH_REQUESTS=60000   POSTs per measured run (ignored when BENCH_DURATION is set)
#   BENCH_DURATION=        e.g. 10s: each measured run lasts this long instead
#   BENCH_ROUNDS=3         rounds per scenario; the table shows medians over rounds
#   BENCH_CONNECTIONS=64   concurrent in-flight requests of the load generator
#   BENCH_ONLY_BARE=1      measure the bare baseline only (no replyd serve)
#   BENCH_PORT=19100       first TCP port on 127.0.0.1; every server start takes the next one
#   BENCH_KEEP=1           keep the work dir (server logs, databases, raw results)
#   BENCH_BEFORE_BIN=      path of an earlier replyd build: measured as the side `before`, in
#                          the same alternating rounds, to show a change's cost (or none)
#   BENCH_WORKER=false     false: an ingest-only process (what this bench measures);
#                          true: the all-in-one serve, its workers replying (sandbox) meanwhile
#   BENCH_CEILING="64 1024" batch sizes of the store-ceiling sides (`store-N`): the same request
#                          stream, parsed ahead, written by a bare batched insert loop on the same
#                          schema (bench/store_ceiling.rs); empty to skip them
#   REPLYD_INGEST_MODE=    passed to replyd (journal|direct; unset: replyd's default)
#
# `msgs/s` is what was acknowledged per second; `stored/s` is the unique messages the store
# holds (queryable, counted by the admin summary) per second from the first POST until the
# last of them was stored — the figure that counts when acknowledging runs ahead of storing.
# Scenarios: A = every POST a new message; B = half the POSTs re-send an earlier payload.
# The load generator (`replyd simulate`) runs on the same machine and competes for its cores.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

requests=${BENCH_REQUESTS:-60000}
duration=${BENCH_DURATION:-}
rounds=${BENCH_ROUNDS:-3}
connections=${BENCH_CONNECTIONS:-64}
only_bare=${BENCH_ONLY_BARE:-0}
worker=${BENCH_WORKER:-false}
port=${BENCH_PORT:-19100}
secret=bench-secret
admin_token=bench-admin
scenarios=("A unique:0.0" "B 50% duplicates:0.5")

ceilings=${BENCH_CEILING-64 1024}
cargo build --release --bin replyd --example bare_server --example store_ceiling >&2
target=${CARGO_TARGET_DIR:-$root/target}
replyd_bin=$target/release/replyd
before_bin=${BENCH_BEFORE_BIN:-}
bare_bin=$target/release/examples/bare_server
ceiling_bin=$target/release/examples/store_ceiling

work=$(mktemp -d "${TMPDIR:-/tmp}/replyd-bench.XXXXXX")
results=$work/results.tsv
: >"$results"
server_pid=

stop_server() {
    [[ -n $server_pid ]] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}

cleanup() {
    stop_server
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server SIDE DIR PORT: starts the server in the background and sets server_pid.
start_server() {
    local side=$1 dir=$2 port=$3 bin=$replyd_bin
    [[ $side == before ]] && bin=$before_bin
    mkdir -p "$dir"
    if [[ $side == bare ]]; then
        "$bare_bin" "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
    else
        # Run from the fresh dir so no ./replyd.toml of the checkout is picked up.
        (cd "$dir" && exec env REPLYD_LISTEN="127.0.0.1:$port" \
            REPLYD_DATABASE_URL="sqlite://$dir/replyd.db" \
            REPLYD_APP_SECRET="$secret" REPLYD_ADMIN_TOKEN="$admin_token" \
            REPLYD_SPOOL_DIR="$dir/spool" RUST_LOG=warn \
            REPLYD_WORKER_ENABLED="$worker" \
            ${REPLYD_INGEST_MODE:+REPLYD_INGEST_MODE="$REPLYD_INGEST_MODE"} \
            "$bin" serve) >"$dir/server.log" 2>&1 &
    fi
    server_pid=$!
    for _ in $(seq 300); do
        if curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "$side server exited before it was healthy; its log:" >&2
            tail -n 30 "$dir/server.log" >&2
            server_pid=
            return 1
        fi
        sleep 0.1
    done
    echo "$side server on port $port not healthy after 30 s; its log:" >&2
    tail -n 30 "$dir/server.log" >&2
    return 1
}

# measure_ceiling SCENARIO RATIO ROUND SIDE: the bare insert loop over the same stream.
measure_ceiling() {
    local scenario=$1 ratio=$2 round=$3 side=$4
    local dir=$work/$side-${scenario%% *}-$round
    mkdir -p "$dir"
    local summary
    summary=$("$ceiling_bin" "$dir/ceiling.db" "$requests" "${side#store-}" "$ratio" "$round")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$side" "$round" 0 "$summary" null >>"$results"
    echo "  $scenario, round $round, $side: done" >&2
}

# stored_summary PORT EXPECTED: polls the admin summary until the store holds EXPECTED inbound
# messages (or 120 s pass); prints it with the time it was reached (`stored_at`, epoch seconds).
stored_summary() {
    local port=$1 expected=$2 summary=null inbound
    for _ in $(seq 1200); do
        summary=$(curl -fsS -m 5 -H "Authorization: Bearer $admin_token" \
            "http://127.0.0.1:$port/api/v1/summary" 2>/dev/null | tr -d '\n') || summary=null
        inbound=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("inbound", -1))' \
            "$summary" 2>/dev/null || echo -1)
        [[ $inbound -ge $expected ]] && break
        sleep 0.1
    done
    [[ $summary == null ]] && { echo null; return; }
    python3 -c 'import json,sys,time; s=json.loads(sys.argv[1]); s["stored_at"]=time.time(); print(json.dumps(s))' "$summary"
}

# measure SCENARIO RATIO ROUND SIDE: one fresh server, one simulate run, one results line.
measure() {
    local scenario=$1 ratio=$2 round=$3 side=$4
    if [[ $side == store-* ]]; then
        measure_ceiling "$@"
        return
    fi
    port=$((port + 1))
    local dir=$work/$side-${scenario%% *}-$round
    start_server "$side" "$dir" "$port"
    local args=(--url "http://127.0.0.1:$port/webhook" --secret "$secret" --json --no-progress
        --connections "$connections" --messages-per-payload 1 --duplicate-ratio "$ratio"
        --seed "$round")
    if [[ -n $duration ]]; then args+=(--duration "$duration"); else args+=(--requests "$requests"); fi
    local summary ended
    summary=$("$replyd_bin" simulate "${args[@]}" 2>"$dir/simulate.log")
    ended=$(date +%s.%N)
    # The first POST left `elapsed_s` before the run ended (payloads are built before that).
    summary=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); s["started_at"]=float(sys.argv[2])-s["elapsed_s"]; print(json.dumps(s))' "$summary" "$ended")
    local rss_kib stored=null expected
    if [[ $side != bare ]]; then
        expected=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["messages_sent"])' "$summary")
        stored=$(stored_summary "$port" "$expected")
    fi
    rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")
    stop_server
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$side" "$round" "$rss_kib" "$summary" \
        "${stored:-null}" >>"$results"
    echo "  $scenario, round $round, $side: done" >&2
}

sides=(bare replyd)
[[ -n $before_bin ]] && sides=(bare before replyd)
for batch in $ceilings; do sides+=("store-$batch"); done
[[ $only_bare == 1 ]] && sides=(bare)
for entry in "${scenarios[@]}"; do
    scenario=${entry%%:*}
    ratio=${entry##*:}
    for round in $(seq "$rounds"); do
        for side in "${sides[@]}"; do
            measure "$scenario" "$ratio" "$round" "$side"
        done
    done
done

load=${duration:-$requests requests}
echo "replyd ingest bench — $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr)," \
    "commit $(git rev-parse --short HEAD 2>/dev/null || echo none)"
echo "load: $load per run, $connections connections, 1 message per payload," \
    "$rounds rounds (medians), server and load generator share the machine;" \
    "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)," \
    "ingest mode ${REPLYD_INGEST_MODE:-default}, workers $worker"
python3 "$root/bench/table.py" "$results"
