"""How soon a new jobs-worker gets to work: queues 2,000 jobs over REST,
starts the worker (its scripts flushed from Redis first, as on a fresh
server) and polls the SUCCESS index every 0.3 ms. Prints, per start, when
the worker logged "worker started" (connected, consumer group ready) and
when its first job was done, counted from the spawn; then the medians. Used
by scripts/profile.sh start, against a private Redis and jobs-api."""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import time
import urllib.request

import redis

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True, help="Redis")
parser.add_argument("--http-port", type=int, required=True, help="jobs-api's REST gateway")
parser.add_argument("--worker", required=True, help="the jobs-worker binary")
parser.add_argument("--prefix", default="profile", help="the API's JOBS_KEY_PREFIX")
parser.add_argument("--runs", type=int, default=12)
args = parser.parse_args()

r = redis.Redis(port=args.port)
done_key = f"{args.prefix}:status:SUCCESS"
batch = json.dumps([{"start": 1, "end": 100}] * 1000).encode()
env = dict(os.environ, JOBS_WORKER_CONCURRENCY="64", JOBS_WORKER_METRICS_ADDR="off",
           REDIS_URL=f"redis://127.0.0.1:{args.port}", JOBS_KEY_PREFIX=args.prefix,
           NO_COLOR="1", RUST_LOG="info")
started_ms, first_ms = [], []
for _ in range(args.runs):
    r.script_flush()
    for _ in range(2):
        request = urllib.request.Request(f"http://127.0.0.1:{args.http_port}/jobs", data=batch,
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request).read()
    before = r.zcard(done_key)
    spawned = time.time()
    worker = subprocess.Popen([args.worker], env=env, stderr=subprocess.PIPE, text=True)
    while r.zcard(done_key) == before:
        time.sleep(0.0003)
    first = time.time() - spawned
    while r.zcard(done_key) < before + 2000:
        time.sleep(0.001)
    worker.terminate()
    log = worker.communicate(timeout=30)[1]
    line = re.search(r"^(\S+Z) .*worker started", log, re.M)
    logged = datetime.datetime.fromisoformat(line.group(1).replace("Z", "+00:00")).timestamp()
    started_ms.append((logged - spawned) * 1000)
    first_ms.append(first * 1000)
    print(f"  started {started_ms[-1]:5.1f} ms, first job done {first_ms[-1]:5.1f} ms")
print(f"median of {args.runs}: started {statistics.median(started_ms):.1f} ms, "
      f"first job done {statistics.median(first_ms):.1f} ms "
      f"(slowest {max(first_ms):.1f} ms)")
