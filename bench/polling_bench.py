"""Benchmarks of issue "Long-polling and SSE" (driven by bench/run.py).

(held)      10,000 concurrent held polls on one worker: KB per held poll from the
            worker's RSS delta (each poll has its own session: a first poll without a
            cursor, then the held one). SSE streams are measured the same way beside it.
(pollcache) Poll cost with the session cache against without it
            (`session_cache_entries = 0`): 1,000 long-pollers on one worker, a message
            every 50 ms, each answer's cursor polled again at once; CPU µs per poll from
            the worker's CPU time (and the supervisor's, where the hub runs), sampled
            from the first publish to the last delivery.
(roundtrip) Publish-to-delivery p50/p99 for 1,000 long-poll, SSE and WebSocket
            subscribers, same run, same rate.
Rates and costs are medians of the rounds; deliveries are totals over all rounds.
"""
import json
import subprocess
import sys
import time

import pubsub_bench as ps


def held_run(env, transport, count):
    plain, tls = env.free_port(), env.free_port()
    sup = ps.dingo_pubsub(env, 1, plain, tls)
    try:
        pid = sup.worker_pids[0]
        before = ps.rss_kb(pid)
        p = subprocess.Popen(ps.wsload(env, "idle", "--transport", transport, "--port", plain, "--count", count,
                                       "--sources", "127.0.8.1", "--concurrency", 256),
                             stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        connected = json.loads(line)["connected"] if line else 0
        time.sleep(3)  # every second poll sent and held
        after = ps.rss_kb(pid)
        p.terminate()
        p.wait(timeout=60)
    finally:
        sup.stop()
    return {"transport": transport, "connected": connected, "kb_each": (after - before) / max(connected, 1)}


def bench_held(env, count=10000):
    rows = [held_run(env, "poll", count), held_run(env, "sse", count)]
    for r in rows:
        print(f"  held {r}", file=sys.stderr)
    return rows


def poll_run(env, cache, subscribers, rate, seconds):
    plain, tls = env.free_port(), env.free_port()
    sup = ps.dingo_pubsub(env, 1, plain, tls, gateway_extra="" if cache else "session_cache_entries = 0")
    try:
        worker = sup.worker_pids[0]
        # CPU from the first publish to the last delivery (pubsub_bench.synced_fanout).
        r, (worker_cpu, sup_cpu) = ps.synced_fanout(
            env, ["--transport", "poll", "--port", plain, "--subscribers", subscribers, "--rate", rate,
                  "--seconds", seconds, "--sources", "127.0.8.2"],
            lambda: [env.cpu_seconds([worker]), env.cpu_seconds([sup.proc.pid])], seconds)
    finally:
        sup.stop()
    polls = max(r["polls"], 1)
    return {"worker_us_per_poll": worker_cpu / polls * 1e6, "supervisor_us_per_poll": sup_cpu / polls * 1e6,
            "polls": r["polls"], "deliveries": r["deliveries"], "expected": r["expected"]}


def bench_pollcache(env, seconds, subscribers=1000, rate=20):
    samples = {True: [], False: []}
    for _ in range(env.ROUNDS):
        for cache in (True, False):
            samples[cache].append(poll_run(env, cache, subscribers, rate, seconds))
    med = {c: {k: env.median([s[k] for s in runs]) for k in runs[0]} for c, runs in samples.items()}
    for c, runs in samples.items():  # totals over all rounds: a median hides a bad round
        med[c]["deliveries"] = sum(s["deliveries"] for s in runs)
        med[c]["expected"] = sum(s["expected"] for s in runs)
    print(f"  pollcache {med}", file=sys.stderr)
    return [(subscribers, rate, med[True], med[False])]


def bench_roundtrip(env, seconds, subscribers=1000, rate=10):
    plain, tls = env.free_port(), env.free_port()
    sup = ps.dingo_pubsub(env, 2, plain, tls)
    rows = []
    try:
        samples = {"ws": [], "poll": [], "sse": []}
        for _ in range(env.ROUNDS):
            for transport in samples:
                out = subprocess.run(ps.wsload(env, "fanout", "--transport", transport, "--port", plain,
                                               "--subscribers", subscribers, "--rate", rate, "--seconds", seconds,
                                               "--sources", "127.0.8.3"),
                                     capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
                samples[transport].append(json.loads(out.strip().splitlines()[-1]))
        for transport, runs in samples.items():
            row = {k: env.median([r[k] for r in runs]) for k in ("p50_ms", "p99_ms")}
            row["deliveries"] = sum(r["deliveries"] for r in runs)  # totals over all rounds
            row["expected"] = sum(r["expected"] for r in runs)
            rows.append((transport, row))
    finally:
        sup.stop()
    print(f"  roundtrip {rows}", file=sys.stderr)
    return rows


def print_tables(held, pollcache, roundtrip):
    if held:
        print()
        print("| (a) held | concurrent on one worker | worker RSS delta each |")
        print("|---|---:|---:|")
        for r in held:
            label = "held long-polls (one session each)" if r["transport"] == "poll" else "idle SSE streams"
            print(f"| {label} | {r['connected']:,} | {r['kb_each']:.2f} KB |")
    if pollcache:
        print()
        print("| (b) session cache | pollers × msg/s | worker CPU µs/poll, cache | without cache | ratio | "
              "supervisor (hub) CPU µs/poll, cache | without cache | deliveries, all rounds (cache / without) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for subs, rate, c, n in pollcache:
            print(f"| 1 worker | {subs:,} × {rate} | {c['worker_us_per_poll']:.1f} | {n['worker_us_per_poll']:.1f} | "
                  f"{c['worker_us_per_poll'] / max(n['worker_us_per_poll'], 1e-9):.2f}× | "
                  f"{c['supervisor_us_per_poll']:.1f} | {n['supervisor_us_per_poll']:.1f} | "
                  f"{c['deliveries']:,.0f}/{c['expected']:,.0f} / {n['deliveries']:,.0f}/{n['expected']:,.0f} |")
    if roundtrip:
        print()
        print("| (c) round trip | p50 ms | p99 ms | deliveries (all rounds) |")
        print("|---|---:|---:|---:|")
        names = {"ws": "WebSocket", "poll": "long-poll", "sse": "SSE"}
        for transport, r in roundtrip:
            print(f"| {names[transport]} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                  f"{r['deliveries']:,.0f} of {r['expected']:,.0f} |")
