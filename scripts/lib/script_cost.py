"""Redis time of the claim and finish scripts per job, at a given batch size:
queues --jobs jobs with create.lua, then claims --batch at a time with
claim.lua and records each batch's success with finish.lua, as a worker
does, one client, nothing else running; reads the scripts' Redis time from
INFO commandstats before and after (SLOWLOG would log, and slow down, every
command a script runs; reading the stats between calls would chill the
caches the next call finds). Prints the two scripts' time per job. Used by
scripts/profile.sh scripts; the scripts' KEYS and ARGV are as their
headers in jobs-core/src/scripts give them."""
import argparse
import uuid

import redis

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--scripts", required=True, help="jobs-core/src/scripts")
parser.add_argument("--jobs", type=int, default=20000)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--prefix", default="scriptcost")
args = parser.parse_args()

r = redis.Redis(port=args.port)
common = open(f"{args.scripts}/common.lua").read()
sha = {name: r.script_load(common + open(f"{args.scripts}/{name}.lua").read())
       for name in ("create", "claim", "finish")}
p = args.prefix
queue, delayed, retention = f"{p}:queue", f"{p}:delayed", f"{p}:retention"
r.delete(queue, delayed, retention, f"{p}:seq", f"{p}:status:QUEUED", f"{p}:status:SUCCESS")
r.xgroup_create(queue, "workers", id="0", mkstream=True)
for start in range(0, args.jobs, 100):
    keys, argv = [queue, f"{p}:seq", f"{p}:status:QUEUED"], [p, 60000]
    for _ in range(min(100, args.jobs - start)):
        jid = str(uuid.uuid4())
        keys += [f"{p}:job:{jid}", f"{p}:idem:"]
        argv += [jid, 1, 100, "sum", "", 3, 60000, "", ""]
    r.evalsha(sha["create"], len(keys), *keys, *argv)


def evalsha():
    stats = r.info("commandstats")["cmdstat_evalsha"]
    return stats["usec"], stats["calls"]


usec_before, calls_before = evalsha()
done, acked_since_trim = 0, 0
while True:
    rows = r.evalsha(sha["claim"], 2, queue, delayed, "workers", "w1", args.batch, p, 30000)
    if not rows:
        break
    acked_since_trim += len(rows)
    trim = int(acked_since_trim >= 100)  # as the worker asks (queue.rs, TRIM_EVERY)
    if trim:
        acked_since_trim = 0
    argv = ["workers", p, 86400000, 86400000, trim]
    for row in rows:
        entry_id, jid, _attempts, lease = row.split(b"\0")[:4]
        argv += [entry_id, jid, lease, "SUCCESS", "5050", 0]
    r.evalsha(sha["finish"], 3, queue, delayed, retention, *argv)
    done += len(rows)
usec, calls = evalsha()
print(f"batch {args.batch}: claim + finish {(usec - usec_before) / done:.2f} us/job "
      f"({done} jobs, {calls - calls_before} script calls)")
