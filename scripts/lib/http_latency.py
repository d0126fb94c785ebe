"""One job at a time, as the harness's e2e measurement does it: every 50 ms (--gap) a
POST /jobs with Python's http.client on a keep-alive connection, then (with
--until-done) GET /jobs/{jid} back to back until it is FINISHED -- SUCCESS.
Prints the medians of the POST, of each GET and of the whole, and what the
first GET saw. Used by scripts/profile.sh latency."""
import argparse
import http.client
import json
import statistics
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--jobs", type=int, default=60)
parser.add_argument("--until-done", action="store_true")
parser.add_argument("--label", default="")
parser.add_argument("--gap", type=float, default=0.05, help="seconds idle before each job")
args = parser.parse_args()

conn = http.client.HTTPConnection("127.0.0.1", args.port)
body = json.dumps({"start": 1, "end": 100})
posts, gets, totals, first_seen = [], [], [], {}
for n in range(args.jobs + 3):
    time.sleep(args.gap)
    start = time.perf_counter()
    conn.request("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
    jid = json.loads(conn.getresponse().read())["jid"]
    posted = time.perf_counter()
    first = None
    while args.until_done:
        before = time.perf_counter()
        conn.request("GET", f"/jobs/{jid}")
        status = json.loads(conn.getresponse().read())["status"]
        if n >= 3:
            gets.append(time.perf_counter() - before)
        first = first or status
        if status == "FINISHED -- SUCCESS":
            break
    if n >= 3:  # the first three warm up
        posts.append(posted - start)
        totals.append(time.perf_counter() - start)
        if first:
            first_seen[first] = first_seen.get(first, 0) + 1

ms = lambda values: f"{statistics.median(values) * 1000:.2f} ms" if values else "-"
line = f"{args.label}: POST p50 {ms(posts)}"
if args.until_done:
    line += f", GET p50 {ms(gets)}, POST to SUCCESS seen p50 {ms(totals)}, first GET saw {first_seen}"
print(line)
