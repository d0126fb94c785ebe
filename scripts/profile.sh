#!/usr/bin/env bash
# Quick before/after figures for one change, on a private Redis (the full
# comparison with peers is scripts/bench.sh):
#
#   scripts/profile.sh drain    # 20,000 jobs queued over REST, one worker drains
#                               # them: jobs/s, worker and Redis CPU per job, the
#                               # worker's context switches per job, and
#                               # Redis's per-command split (INFO commandstats);
#                               # with PERF=1 also redis-server's and the
#                               # worker's top symbols (perf record -e cpu-clock)
#   scripts/profile.sh ingest   # POST /jobs at 50 connections with wrk for 10 s:
#                               # req/s, p50/p99, API and Redis CPU per request;
#                               # with PERF=1 also jobs-api's top symbols
#   scripts/profile.sh latency  # one job every 50 ms, as the harness's e2e: the
#                               # POST alone with no worker (and the API's and
#                               # Redis's CPU per POST; and back to back),
#                               # with a worker on another prefix, and with a
#                               # worker, then POST and GETs until SUCCESS; with
#                               # PERF=1 also jobs-api's profile over the cold
#                               # POSTs (perf record --call-graph dwarf)
#   scripts/profile.sh floor    # the harness's e2e client (50 jobs, 50 ms apart)
#                               # against Jobs and against the least a REST
#                               # job service can do (testkit/examples/rest_floor.rs),
#                               # three runs each, alternating, each also split
#                               # into POST and GET: what this machine allows,
#                               # beside what Jobs takes; first, with no worker,
#                               # each API's and Redis's CPU per cold POST (perf)
#   scripts/profile.sh scripts  # Redis time of claim.lua and finish.lua per job,
#                               # claiming and finishing batches of 1, then of 32,
#                               # from one client (scripts/lib/script_cost.py)
#   scripts/profile.sh lua      # what single pieces of the scripts cost in
#                               # Redis's Lua (a command, a format, a row
#                               # built two ways; scripts/lib/lua_cost.py)
#   scripts/profile.sh start    # a new worker's start, twelve times: when it
#                               # logs "worker started" and when its first
#                               # job is done (scripts/lib/worker_start.py)
#   scripts/profile.sh listing  # RUNNING (default 2,000) sleeping jobs, then the
#                               # Redis time of a page of RUNNING jobs, of an
#                               # unfiltered page and of a SUCCESS page
#   scripts/profile.sh instructions  # jobs-api under valgrind's callgrind,
#                               # POST /jobs from CONNECTIONS (1) connections
#                               # for SECS (10) s: the instructions the API
#                               # runs per POST, in user space. A count, not a
#                               # time: the same for the same binary however
#                               # busy the machine is, so two builds compare
#                               # on a noisy host (set API= to the other)
#   scripts/profile.sh drain-instructions  # N jobs queued, then jobs-worker
#                               # under callgrind drains them: the
#                               # instructions it runs per job in user space,
#                               # its start included (set WORKER= to compare)
#
# Knobs: N (20000), CONCURRENCY (64), SECS (10), RUNNING (2000), PORT (6399),
# WORKER and API (this tree's target/release/jobs-worker and jobs-api: set
# one to another build's binary to compare the two, alternating runs), BUSY (set: a busy loop at
# nice 19 on every CPU while measuring, so that no vCPU halts when idle:
# with latency or floor, what waking idle vCPUs costs), PIN (set: drain
# with Redis on the first CPU and the worker on the second). Needs the peers
# harness set up (scripts/bench.sh does it) and wrk for ingest. Everything
# stays on 127.0.0.1; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/peers}
STATE=${PEERS_HOME:-/tmp/jobs-peers}
USAGE='usage: scripts/profile.sh drain|ingest|latency|floor|scripts|lua|start|listing|instructions|drain-instructions'
MODE=${1:?$USAGE}
N=${N:-20000}
PORT=${PORT:-6399}
HTTP=127.0.0.1:$((PORT - 1000))
WORKER=${WORKER:-$ROOT/target/release/jobs-worker}
API=${API:-$ROOT/target/release/jobs-api}

cargo build --release --locked -p jobs-api -p jobs-worker >/dev/null
# A drain waits for every job: a worker that cannot start would hang it.
[ -x "$WORKER" ] || { echo "profile.sh: no worker binary at $WORKER" >&2; exit 2; }
[ -x "$API" ] || { echo "profile.sh: no API binary at $API" >&2; exit 2; }
[ "$MODE" != floor ] || cargo build --release --locked -p jobs-testkit --example rest_floor >/dev/null
if [[ $MODE == *instructions ]] && ! command -v valgrind >/dev/null; then
  echo "profile.sh: $MODE needs valgrind (Debian: apt-get install valgrind)" >&2; exit 2
fi
pids=()
# Stopped newest first, Redis last: a stopping worker still records the jobs
# it hands back.
cleanup() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
if [ -n "${BUSY:-}" ]; then
  # Lowest priority: they yield to whatever else wakes, and the vCPU
  # itself never goes idle.
  for _ in $(seq "$(nproc)"); do
    nice -n 19 bash -c 'while :; do :; done' & pids+=($!)
  done
fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# POSTs one job every 50 ms with no worker taking them (http_latency.py:
# JOBS of them after 3 to warm up), to the API on PORT whose pid is PID; then,
# where perf is installed, the CPU each POST cost that API and Redis (perf's
# task-clock, which counts threads that exit meanwhile too: the floor's
# connections; far finer than /proc's ticks for so short a window).
post_alone() {
  local label=$1 port=$2 pid=$3 jobs=$4 api_stat='' redis_stat=''
  if command -v perf >/dev/null; then
    perf stat -e task-clock -x, -p "$pid" -o "$STATE/post-api.stat" & api_stat=$!
    perf stat -e task-clock -x, -p "$redis" -o "$STATE/post-redis.stat" & redis_stat=$!
    pids+=("$api_stat" "$redis_stat")
    sleep 0.2
  fi
  "$STATE/.venv/bin/python" "$ROOT/scripts/lib/http_latency.py" --port "$port" --jobs "$jobs" \
    --label "$label"
  if [ -n "$api_stat" ]; then
    kill -INT "$api_stat" "$redis_stat"; wait "$api_stat" "$redis_stat" 2>/dev/null || true
    per_post() { awk -F, -v n=$((jobs + 3)) '/task-clock/ {printf "%.0f", $1 / n * 1000}' "$1"; }
    echo "  CPU per POST after an idle gap: API $(per_post "$STATE/post-api.stat") us," \
      "Redis $(per_post "$STATE/post-redis.stat") us"
  fi
}
# Redis's per-command split over the last `config resetstat`, per unit.
commandstats() {
  redis-cli -p "$PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' -v n="$1" -v u="$2" \
    '/^cmdstat_/ && $5 / n >= 0.05 {printf "  %-24s %6.3f calls/%s %7.2f us/%s\n", substr($1, 9), $3 / n, u, $5 / n, u}' \
    | sort -k4 -n -r
}
# The top `lines` symbols of perf recording `file`, % of its samples (the
# kernel's marked [k]). `head` closes the pipe early: perf's SIGPIPE is not a
# failure.
top_symbols() {
  perf report -q -i "$1" --no-children --sort symbol 2>/dev/null \
    | grep '%' | head -"$2" | cut -c1-110 || true
}
per() { awk -v t="$1" -v n="$2" -v h="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / h / n * 1e6}'; }
# Queues N sum jobs through the API, with no worker running.
enqueue() {
  "$STATE/.venv/bin/python" "$PEERS_DIR/harness/http_enqueue.py" "$N" --base "http://$HTTP" \
    --jid-file "$STATE/profile-jids.txt" >/dev/null 2>&1
}
# Returns once N jobs have succeeded, polling every $1 s (one redis-cli, not
# one process per poll: spawning them costs a core).
until_drained() {
  redis-cli -p "$PORT" -r -1 -i "$1" zcard profile:status:SUCCESS | awk -v n="$N" '$1 >= n {exit}' || true
}
# Dumps the callgrind counts of process $1, started with
# --callgrind-out-file=$STATE/$2 and not dumped before (the dump is $2.1),
# and prints the instructions it ran.
callgrind_total() {
  callgrind_control -d "$1" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$STATE/$2.1"
}

redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis=$!; pids+=("$redis")
export REDIS_URL=redis://127.0.0.1:$PORT JOBS_KEY_PREFIX=profile
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
api_cmd=("$API")
[ "$MODE" != instructions ] ||
  api_cmd=(valgrind --tool=callgrind --callgrind-out-file="$STATE/callgrind.api" "$API")
"${api_cmd[@]}" --grpc-addr "127.0.0.1:$((PORT + 1000))" --http-addr "$HTTP" 2>/dev/null &
api=$!; pids+=("$api")
for _ in $(seq 100); do curl -s -o /dev/null "$HTTP/healthz" && break; sleep 0.2; done

case "$MODE" in
drain)
  enqueue
  redis-cli -p "$PORT" config resetstat >/dev/null
  if [ -n "${PERF:-}" ]; then
    perf record -q -e cpu-clock -F 4999 -p "$redis" -o "$STATE/profile-redis.perf" 2>/dev/null &
    recorder=$!; pids+=("$recorder"); sleep 0.2
  fi
  # PIN: Redis on the first CPU, the worker on the second, so that
  # neither ever runs where the other does.
  pin=()
  if [ -n "${PIN:-}" ]; then
    taskset -a -p 1 "$redis" >/dev/null
    pin=(taskset 2)
  fi
  r0=$(cpu_ticks "$redis"); t0=$(date +%s.%N)
  JOBS_WORKER_CONCURRENCY=${CONCURRENCY:-64} JOBS_WORKER_METRICS_ADDR=off \
    "${pin[@]}" "$WORKER" 2>/dev/null &
  worker=$!; pids+=("$worker")
  if [ -n "${PERF:-}" ]; then
    perf record -q -e cpu-clock -F 4999 -p "$worker" -o "$STATE/profile-worker.perf" 2>/dev/null &
    worker_recorder=$!; pids+=("$worker_recorder")
  fi
  until_drained 0.005
  t1=$(date +%s.%N); r1=$(cpu_ticks "$redis"); w1=$(cpu_ticks "$worker")
  # Times the worker's threads went to sleep (to wait for Redis, or for work).
  switches=$(cat "/proc/$worker"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}')
  echo "drain: $(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}') jobs/s," \
    "worker $(per "$w1" "$N") us/job, redis $(per $((r1 - r0)) "$N") us/job," \
    "worker context switches $(awk -v s="$switches" -v n="$N" 'BEGIN {printf "%.2f", s / n}')/job"
  commandstats "$N" job
  if [ -n "${PERF:-}" ]; then
    kill -INT "$recorder" "$worker_recorder"; wait "$recorder" "$worker_recorder" 2>/dev/null || true
    echo "redis-server's profile over the drain (top symbols, % of its samples):"
    top_symbols "$STATE/profile-redis.perf" 15
    echo "jobs-worker's profile over the drain:"
    top_symbols "$STATE/profile-worker.perf" 10
  fi
  ;;
ingest)
  lua=$PEERS_DIR/harness/wrk_post.lua
  wrk -t2 -c50 -d2s -s "$lua" "http://$HTTP/jobs" >/dev/null 2>&1
  redis-cli -p "$PORT" config resetstat >/dev/null
  if [ -n "${PERF:-}" ]; then
    perf record -q -e cpu-clock -F 4999 -p "$api" -o "$STATE/profile-ingest.perf" 2>/dev/null &
    recorder=$!; pids+=("$recorder"); sleep 0.2
  fi
  a0=$(cpu_ticks "$api"); r0=$(cpu_ticks "$redis")
  out=$(wrk -t2 -c50 -d"${SECS:-10}"s --latency -s "$lua" "http://$HTTP/jobs" 2>&1)
  a1=$(cpu_ticks "$api"); r1=$(cpu_ticks "$redis")
  result=$(grep '^WRKRESULT' <<<"$out")
  n=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
  echo "ingest: $(grep -oE '(rps|p50_ms|p99_ms)=[^ ]+' <<<"$result" | tr '\n' ' ')" \
    "api $(per $((a1 - a0)) "$n") us/req, redis $(per $((r1 - r0)) "$n") us/req"
  commandstats "$n" req
  if [ -n "${PERF:-}" ]; then
    kill -INT "$recorder"; wait "$recorder" 2>/dev/null || true
    echo "jobs-api's profile under the load (top symbols, % of its samples):"
    top_symbols "$STATE/profile-ingest.perf" 15
  fi
  ;;
latency)
  py=("$STATE/.venv/bin/python" "$ROOT/scripts/lib/http_latency.py" --port "${HTTP##*:}")
  if [ -n "${PERF:-}" ]; then
    perf record -q -e cpu-clock -F 20000 --call-graph dwarf,32768 -p "$api" \
      -o "$STATE/profile-api.perf" 2>/dev/null &
    recorder=$!; pids+=("$recorder"); sleep 0.2
  fi
  post_alone "no worker" "${HTTP##*:}" "$api" 60
  if [ -n "${PERF:-}" ]; then
    kill -INT "$recorder"; wait "$recorder" 2>/dev/null || true
    echo "jobs-api's profile over those POSTs (% of its samples, callees included; the frames named here):"
    # The first (widest) line of each: the kernel, hyper's connection, the
    # router with everything under it, redis-rs's multiplexer, the group
    # commit, the request span.
    perf report -q -i "$STATE/profile-api.perf" --children --sort symbol -g none 2>/dev/null \
      | sed -E 's/ +/ /g' | awk '
          /\[k\] do_syscall_64/ && !k++ ||
          /Dispatcher<D,Bs,I,T>::poll_catch/ && !h++ ||
          /\] poll<tower::util::map_request::MapRequest<axum::routing::Router/ && !r++ ||
          /PipelineSink<T> as futures_sink::Sink/ && !p++ ||
          /Store::create_groups::\{\{closure\}\}/ && !g++ ||
          /\] tracing::span::Span::new/ && !t++' | cut -c1-100
  fi
  "${py[@]}" --label "no worker, back to back" --gap 0
  start_worker() {
    JOBS_WORKER_CONCURRENCY=${CONCURRENCY:-64} JOBS_WORKER_METRICS_ADDR=off \
      "$WORKER" 2>/dev/null &
    worker=$!; pids+=("$worker"); sleep 1
  }
  JOBS_KEY_PREFIX=elsewhere start_worker
  "${py[@]}" --label "a worker on another prefix"
  kill "$worker"; wait "$worker" 2>/dev/null || true
  start_worker
  "${py[@]}" --label "a worker" --until-done
  ;;
floor)
  floor=$ROOT/target/release/examples/rest_floor
  FLOOR_HTTP=127.0.0.1:$((PORT - 1001))
  "$floor" api "$FLOOR_HTTP" & floor_api=$!; pids+=("$floor_api")
  sleep 0.2
  # Before any worker runs: what one cold POST costs each.
  post_alone "floor, POST alone (no worker)" "${FLOOR_HTTP##*:}" "$floor_api" 200
  post_alone "jobs, POST alone (no worker)" "${HTTP##*:}" "$api" 200
  "$floor" worker & pids+=($!)
  JOBS_WORKER_CONCURRENCY=${CONCURRENCY:-64} JOBS_WORKER_METRICS_ADDR=off \
    "$WORKER" 2>/dev/null &
  pids+=($!)
  sleep 1
  for run in 1 2 3; do
    for target in floor jobs; do
      base=http://$HTTP
      [ "$target" = jobs ] || base=http://$FLOOR_HTTP
      API_BASE=$base "$STATE/.venv/bin/python" "$PEERS_DIR/harness/e2e.py" --peer "$target" 2>&1 \
        | sed -n "s/^e2e: /$target, run $run, the harness's e2e.py: /p"
      "$STATE/.venv/bin/python" "$ROOT/scripts/lib/http_latency.py" --port "${base##*:}" \
        --until-done --label "$target, run $run, split"
    done
  done
  ;;
scripts)
  for batch in 1 32; do
    jobs=$((batch == 1 ? 5000 : N))
    "$STATE/.venv/bin/python" "$ROOT/scripts/lib/script_cost.py" --port "$PORT" \
      --scripts "$ROOT/jobs-core/src/scripts" --jobs "$jobs" --batch "$batch"
  done
  ;;
lua)
  "$STATE/.venv/bin/python" "$ROOT/scripts/lib/lua_cost.py" --port "$PORT" \
    --scripts "$ROOT/jobs-core/src/scripts"
  ;;
start)
  "$STATE/.venv/bin/python" "$ROOT/scripts/lib/worker_start.py" --port "$PORT" \
    --http-port "${HTTP##*:}" --worker "$WORKER"
  ;;
listing)
  running=${RUNNING:-2000}
  JOBS_WORKER_CONCURRENCY=$running JOBS_WORKER_METRICS_ADDR=off JOBS_SHUTDOWN_GRACE_MS=100 \
    "$WORKER" 2>/dev/null &
  pids+=($!)
  batch=$(python3 -c "import json; print(json.dumps([{'start': 0, 'end': 600000, 'kind': 'sleep'}] * 1000))")
  for _ in $(seq $(((running + 999) / 1000))); do
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data "$batch" "$HTTP/jobs"
  done
  until [ "$(redis-cli -p "$PORT" xpending profile:queue workers | head -1)" -ge "$running" ]; do sleep 0.2; done
  # The running jobs' entries are older than the newest jobs' creation (less
  # the 5 s clock allowance of list.lua), as when work waits in a backlog.
  sleep 6
  for _ in $(seq 300); do
    curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"start":1,"end":2}' "$HTTP/jobs"
  done
  sleep 1
  redis-cli -p "$PORT" config set slowlog-log-slower-than 0 >/dev/null
  for query in "status=RUNNING&page_size=100" "page_size=100" "status=SUCCESS&page_size=100"; do
    redis-cli -p "$PORT" slowlog reset >/dev/null
    curl -s -o /dev/null "$HTTP/jobs?$query"
    us=$(redis-cli -p "$PORT" slowlog get 5 | awk 'NR == 3')
    echo "listing with $running jobs running: GET /jobs?$query took Redis $us us"
  done
  ;;
instructions)
  lua=$PEERS_DIR/harness/wrk_post.lua
  connections=${CONNECTIONS:-1}
  wrk -t1 -c"$connections" -d2s -s "$lua" "http://$HTTP/jobs" >/dev/null 2>&1
  rm -f "$STATE"/callgrind.api.*
  callgrind_control -z "$api" >/dev/null 2>&1
  queued() { redis-cli -p "$PORT" zcard profile:status:QUEUED; }
  q0=$(queued)
  wrk -t1 -c"$connections" -d"${SECS:-10}"s -s "$lua" "http://$HTTP/jobs" >/dev/null 2>&1
  q1=$(queued)
  total=$(callgrind_total "$api" callgrind.api)
  echo "instructions: $((q1 - q0)) POSTs at $connections connections, jobs-api ran" \
    "$((total / (q1 - q0))) instructions per POST in user space (callgrind: $STATE/callgrind.api.1)"
  ;;
drain-instructions)
  enqueue
  rm -f "$STATE"/callgrind.worker*
  JOBS_WORKER_CONCURRENCY=${CONCURRENCY:-64} JOBS_WORKER_METRICS_ADDR=off valgrind --tool=callgrind \
    --callgrind-out-file="$STATE/callgrind.worker" "$WORKER" 2>/dev/null &
  worker=$!; pids+=("$worker")
  until_drained 0.05
  total=$(callgrind_total "$worker" callgrind.worker)
  echo "drain-instructions: $N jobs, jobs-worker ran $((total / N)) instructions per job in user space," \
    "its start included (callgrind: $STATE/callgrind.worker.1)"
  ;;
*) echo "$USAGE" >&2; exit 2 ;;
esac
