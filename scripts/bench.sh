#!/usr/bin/env bash
# Measures Jobs beside its peers on this machine, in one run, with the shared
# harness (../shared/peers: drain, REST ingest, end-to-end latency), then the
# memory of jobs-api and jobs-worker after a 20,000-job drain. BENCHMARKS.md
# records a run of this script. Everything stays on 127.0.0.1; every process
# started here is stopped by its PID.
#
#   scripts/bench.sh                       # bullmq, the teaching design, and Jobs
#   PEERS=rust scripts/bench.sh            # Jobs alone
#   REPEAT=1 scripts/bench.sh              # the harness's knobs pass through
#   MEMORY_ONLY=1 scripts/bench.sh         # only the memory measurement
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
export PEERS=${PEERS:-"bullmq seed_ref rust"}
# The same concurrency BullMQ gets in the harness (50), rounded up.
CONCURRENCY=${WORKER_CONCURRENCY:-64}

cargo build --release --locked -p jobs-api -p jobs-worker
bash "$PEERS_DIR/setup.sh" >/dev/null

if [ -z "${MEMORY_ONLY:-}" ]; then
  # The drain ends when the SUCCESS index holds every job: a counter Jobs
  # keeps, read with ZCARD, as BullMQ's drain is read from its completed set.
  # Left to its default, the harness would instead end our drain with 65
  # REST GETs in a row (~20 ms of a ~280 ms window that BullMQ's does not
  # have). The harness's REST check of the jobs and results still follows.
  RUST_DONE_SPEC=${RUST_DONE_SPEC:-redis-zcard:0:bench:status:SUCCESS} \
  RUST_API_CMD="JOBS_KEY_PREFIX=bench exec $ROOT/target/release/jobs-api" \
  RUST_WORKER_CMD="JOBS_KEY_PREFIX=bench JOBS_WORKER_CONCURRENCY=$CONCURRENCY JOBS_WORKER_METRICS_ADDR=off exec $ROOT/target/release/jobs-worker" \
    bash "$PEERS_DIR/bench.sh"
fi

# ---- memory after a drain ---------------------------------------------------
N=${MEMORY_N:-20000}
PORT=${MEMORY_REDIS_PORT:-6393}
STATE=${PEERS_HOME:-/tmp/jobs-peers}
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
export REDIS_URL=redis://127.0.0.1:$PORT JOBS_KEY_PREFIX=memory
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$ROOT/target/release/jobs-api" --grpc-addr 127.0.0.1:50095 --http-addr 127.0.0.1:5095 2>/dev/null &
api=$!; pids+=("$api")
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:5095/healthz && break; sleep 0.1; done
"$STATE/.venv/bin/python" "$PEERS_DIR/harness/http_enqueue.py" "$N" --base http://127.0.0.1:5095 \
  --jid-file "$STATE/memory-jids.txt" >/dev/null
JOBS_WORKER_CONCURRENCY=$CONCURRENCY JOBS_WORKER_METRICS_ADDR=off "$ROOT/target/release/jobs-worker" 2>/dev/null &
worker=$!; pids+=("$worker")
deadline=$((SECONDS + 120))
until [ "$(redis-cli -p "$PORT" zcard memory:status:SUCCESS)" -ge "$N" ]; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "memory: the drain did not finish" >&2; exit 1; }
  sleep 0.1
done
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
echo "memory after draining $N jobs: jobs-api RSS $(rss "$api") MiB, jobs-worker RSS $(rss "$worker") MiB"
