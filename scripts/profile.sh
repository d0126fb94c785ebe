#!/usr/bin/env bash
# Quick before/after figures for one change, on a private Redis (the full
# comparison with peers is scripts/bench.sh):
#
#   scripts/profile.sh drain    # 20,000 jobs queued over REST, one worker drains
#                               # them: jobs/s, worker and Redis CPU per job, and
#                               # Redis's per-command split (INFO commandstats)
#   scripts/profile.sh ingest   # POST /jobs at 50 connections with wrk for 10 s:
#                               # req/s, p50/p99, API and Redis CPU per request
#
# Knobs: N (20000), CONCURRENCY (64), SECS (10), PORT (6399). Needs the peers
# harness set up (scripts/bench.sh does it) and wrk for ingest. Everything
# stays on 127.0.0.1; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
STATE=${PEERS_HOME:-/tmp/jobs-peers}
MODE=${1:?usage: scripts/profile.sh drain|ingest}
N=${N:-20000}
PORT=${PORT:-6399}
HTTP=127.0.0.1:$((PORT - 1000))

cargo build --release --locked -p jobs-api -p jobs-worker >/dev/null
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Redis's per-command split over the last `config resetstat`, per unit.
commandstats() {
  redis-cli -p "$PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$1" -v u="$2" \
    '/^cmdstat_/ && $5 / n >= 0.05 {printf "  %-24s %6.3f calls/%s %7.2f us/%s\n", substr($1, 9), $3 / n, u, $5 / n, u}' \
    | sort -k4 -n -r
}
per() { awk -v t="$1" -v n="$2" -v h="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / h / n * 1e6}'; }

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis=$!; pids+=("$redis")
export REDIS_URL=redis://127.0.0.1:$PORT JOBS_KEY_PREFIX=profile
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$ROOT/target/release/jobs-api" --grpc-addr "127.0.0.1:$((PORT + 1000))" --http-addr "$HTTP" 2>/dev/null &
api=$!; pids+=("$api")
for _ in $(seq 50); do curl -s -o /dev/null "$HTTP/healthz" && break; sleep 0.1; done

case "$MODE" in
drain)
  "$STATE/.venv/bin/python" "$PEERS_DIR/harness/http_enqueue.py" "$N" --base "http://$HTTP" \
    --jid-file "$STATE/profile-jids.txt" >/dev/null 2>&1
  redis-cli -p "$PORT" config resetstat >/dev/null
  r0=$(cpu_ticks "$redis"); t0=$(date +%s.%N)
  JOBS_WORKER_CONCURRENCY=${CONCURRENCY:-64} JOBS_WORKER_METRICS_ADDR=off \
    "$ROOT/target/release/jobs-worker" 2>/dev/null &
  worker=$!; pids+=("$worker")
  # One redis-cli polling, not one process per poll: spawning them costs a core.
  redis-cli -p "$PORT" -r -1 -i 0.005 zcard profile:status:SUCCESS | awk -v n="$N" '$1 >= n {exit}' || true
  t1=$(date +%s.%N); r1=$(cpu_ticks "$redis"); w1=$(cpu_ticks "$worker")
  echo "drain: $(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}') jobs/s," \
    "worker $(per "$w1" "$N") us/job, redis $(per $((r1 - r0)) "$N") us/job"
  commandstats "$N" job
  ;;
ingest)
  lua=$PEERS_DIR/harness/wrk_post.lua
  wrk -t2 -c50 -d2s -s "$lua" "http://$HTTP/jobs" >/dev/null 2>&1
  redis-cli -p "$PORT" config resetstat >/dev/null
  a0=$(cpu_ticks "$api"); r0=$(cpu_ticks "$redis")
  out=$(wrk -t2 -c50 -d"${SECS:-10}"s --latency -s "$lua" "http://$HTTP/jobs" 2>&1)
  a1=$(cpu_ticks "$api"); r1=$(cpu_ticks "$redis")
  result=$(grep '^WRKRESULT' <<<"$out")
  n=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
  echo "ingest: $(grep -oE '(rps|p50_ms|p99_ms)=[^ ]+' <<<"$result" | tr '\n' ' ')" \
    "api $(per $((a1 - a0)) "$n") us/req, redis $(per $((r1 - r0)) "$n") us/req"
  commandstats "$n" req
  ;;
*) echo "usage: scripts/profile.sh drain|ingest" >&2; exit 2 ;;
esac
