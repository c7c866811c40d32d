"""Chaos on the Redis engine (issue 13), driven by bench/run.py (`--only chaos`) or alone:

  bench/chaos_bench.py [--build build] [--seconds 600] [--channels 4] [--rate 5]
                       [--redis-persistence aof|none] [--seed N]

Two hosts in network namespaces with Redis on a third (tests/integration/hosts.py).
On each host, for each channel: a publisher (REST, `--rate` a second) and a WebSocket,
an SSE and a long-poll subscriber (tests/integration/traffic.py: they reconnect and
resume, to the other host when theirs does not answer). For `--seconds`, every 6-15 s
(at random) one fault:
- worker: kill -9 of a worker (the supervisor starts another);
- supervisor: kill -9 of a supervisor, restarted 1-3 s later with the same config, as
  the external watchdog would (its workers re-attach);
- host: kill -9 of a supervisor and all its workers, restarted 1-3 s later;
- redis: kill -9 of Redis, started again 1-3 s later (with `aof`, appendfsync always, it
  keeps every acknowledged write; `none` loses everything, so every channel gets a new
  epoch and each subscriber one recovered:false). The bus is pluggable (hosts.py): a
  Redis Cluster's `kill()` would take a master;
- link: a host's link down for 2-5 s, then up.
Then the faults stop, the publishers stop, every subscriber catches up, and the checker
(tests/integration/checker.py) counts: published and delivered messages, the hubs' gaps
repaired (from both supervisors' status, summed over their lives), clients' exact
resumes, recovered:false (each laid to the last fault before it), silent gaps,
missing acknowledged messages and duplicates. Goals: 0 silent gaps, 0 duplicates, and
0 recovered:false after the kills of workers, supervisors and hosts.
"""
import argparse
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import checker  # noqa: E402
import harness  # noqa: E402
import netns  # noqa: E402
from hosts import TOKEN, Hosts  # noqa: E402
from traffic import PollSubscriber, Publisher, SseSubscriber, WsSubscriber  # noqa: E402

FAULTS = ("worker", "supervisor", "host", "redis", "link")


class Chaos:
    def __init__(self, hosts, rng, log):
        self.hosts = hosts
        self.rng = rng
        self.log = log
        self.events = []  # (monotonic start, kind, detail)
        self.stats = {}  # supervisor pid -> its last hub stats (counters live as long as the process)
        self.lock = threading.Lock()

    def sample_stats(self):
        for s in self.hosts.supervisors:
            if s.proc is None or s.proc.poll() is not None:
                continue
            try:
                hub = s.status()["hub"]
            except (ValueError, OSError):
                continue
            with self.lock:
                self.stats[s.proc.pid] = hub

    def fault(self, kind):
        h = self.rng.randrange(2)
        hosts = self.hosts
        start = time.monotonic()
        self.sample_stats()
        if kind == "worker":
            pids = list(hosts.supervisors[h].worker_pids().values())
            victim = self.rng.choice(pids)
            os.kill(victim, 9)
            detail = f"host {'ab'[h]} worker pid {victim}"
        elif kind in ("supervisor", "host"):
            if kind == "host":
                hosts.kill_host(h)
            else:
                hosts.kill_supervisor(h)
            down = self.rng.uniform(1, 3)
            time.sleep(down)
            hosts.restart_supervisor(h)
            detail = f"host {'ab'[h]}, down {down:.1f} s"
        elif kind == "redis":
            hosts.bus.kill()
            down = self.rng.uniform(1, 3)
            time.sleep(down)
            hosts.bus.start()
            detail = f"down {down:.1f} s"
        else:
            host = (hosts.a, hosts.b)[h]
            down = self.rng.uniform(2, 5)
            host.link(False)
            time.sleep(down)
            host.link(True)
            detail = f"host {'ab'[h]}, {down:.1f} s"
        self.events.append((start, kind, detail))
        self.log(f"chaos: {kind} ({detail})")

    def run(self, seconds, halt):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not halt.is_set():
            halt.wait(self.rng.uniform(6, 15))
            if time.monotonic() >= end or halt.is_set():
                break
            self.fault(self.rng.choice(FAULTS))

    def cause(self, t):
        """The last fault that started before time t."""
        kind = "none"
        for start, k, _ in self.events:
            if start <= t:
                kind = k
        return kind


def run_chaos(build, seconds, channels=4, rate=5.0, persistence="aof", seed=None, log=print, bus_factory=None):
    """bus_factory(host) -> the bus (hosts.RedisNode's interface; a Redis Cluster's
    kill() would kill a master at random and start() bring it back), else one Redis."""
    harness.BIN = os.path.join(build, "bin")
    why = netns.unavailable()
    if why:
        log(f"chaos: skipped: {why}")
        return None
    rng = random.Random(seed)
    hosts = Hosts(persistence=(persistence == "aof"), history_size=1000, bus_factory=bus_factory)
    rec = checker.Recorder()
    clients = []
    halt = threading.Event()
    chaos = Chaos(hosts, rng, log)
    sampler_halt = threading.Event()
    try:
        names = [f"/chaos/{n}" for n in range(channels)]
        subs = []
        for ch in names:
            for i in (0, 1):
                for cls in (WsSubscriber, SseSubscriber, PollSubscriber):
                    subs.append(cls(f"{cls.__name__[:-10].lower()}@{'ab'[i]}{ch}", rec, hosts.endpoints(i), ch))
        for s in subs:
            s.start()
        clients += subs
        for s in subs:
            if not s.ready.wait(15):
                raise RuntimeError(f"{s.name} never got its first answer")
        pubs = [Publisher(f"pub@{'ab'[i]}{ch}", rec, [hosts.endpoint(i)], ch, rate, TOKEN)
                for ch in names for i in (0, 1)]
        for p in pubs:
            p.start()
        clients += pubs

        def sample():
            while not sampler_halt.wait(2):
                chaos.sample_stats()
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.monotonic()
        log(f"chaos: {len(subs)} subscribers, {len(pubs)} publishers at {rate}/s, {seconds} s of faults")
        chaos.run(seconds, halt)
        time.sleep(5)  # the last fault's effects settle under traffic
        for p in pubs:
            p.stop()
        for p in pubs:
            p.join(10)
        settled = True
        try:
            harness.wait_for(lambda: checker.caught_up(rec), 60, interval=0.5, what="subscribers caught up")
        except AssertionError:
            settled = False
        chaos.sample_stats()
        sampler_halt.set()
        for s in subs:
            s.stop()
        report = checker.check(rec)
        elapsed = time.monotonic() - t0
        by_cause = {}
        for t in report.recovered_false_at:
            by_cause[chaos.cause(t)] = by_cause.get(chaos.cause(t), 0) + 1
        faults = {}
        for _, kind, _ in chaos.events:
            faults[kind] = faults.get(kind, 0) + 1
        with chaos.lock:
            hub = {k: sum(st.get(k, 0) for st in chaos.stats.values()) for k in ("repaired", "gaps", "probe_failures")}
        return {"seconds": seconds, "elapsed": elapsed, "settled": settled, "report": report, "faults": faults,
                "recovered_false_by_cause": by_cause, "hub": hub, "failed": dict(rec.failed),
                "events": chaos.events, "persistence": persistence, "subscribers": len(subs),
                "publishers": len(pubs), "rate": rate}
    finally:
        halt.set()
        sampler_halt.set()
        for c in clients:
            c.stop()
        hosts.close()


def print_table(result):
    if not result:
        return
    r = result["report"]
    print(f"\n### Chaos: {result['seconds']} s of faults on two hosts and Redis ({result['subscribers']} subscribers: "
          f"WebSocket, SSE, poll; {result['publishers']} publishers at {result['rate']}/s; Redis persistence "
          f"{result['persistence']})\n")
    print("| figure | value |")
    print("|---|---:|")
    faults = ", ".join(f"{k} {v}" for k, v in sorted(result["faults"].items())) or "none"
    rows = [("faults", faults),
            ("messages published (acknowledged)", r.published),
            ("publishes refused or failed", ", ".join(f"{k} {v}" for k, v in sorted(result["failed"].items())) or "0"),
            ("messages delivered", r.delivered),
            ("gaps repaired by the hubs (messages)", result["hub"]["repaired"]),
            ("gaps the hubs could not repair", result["hub"]["gaps"]),
            ("pub/sub probes failed", result["hub"]["probe_failures"]),
            ("client reconnects / exact resumes", f"{r.reconnects} / {r.resumed}"),
            ("reconnects by transport and reason",
             ", ".join(f"{k} {v}" for k, v in sorted(r.reconnect_reasons.items())) or "none"),
            ("recovered:false", r.recovered_false),
            ("recovered:false by the fault before it",
             ", ".join(f"{k} {v}" for k, v in sorted(result["recovered_false_by_cause"].items())) or "none"),
            ("recovered:false after worker, supervisor and host kills (goal 0)",
             sum(v for k, v in result["recovered_false_by_cause"].items() if k in ("worker", "supervisor", "host"))),
            ("silent gaps (positions; goal 0)", r.silent_gaps),
            ("acknowledged messages never delivered (goal 0)", r.missing_acked),
            ("duplicates (goal 0)", r.duplicates),
            ("wrong data / positions acknowledged twice", f"{r.wrong_data} / {r.reused_positions}"),
            ("every subscriber caught up at the end", "yes" if result["settled"] else "NO")]
    for name, value in rows:
        print(f"| {name} | {value} |")
    if r.problems:
        print("\nFirst problems found:\n")
        for p in r.problems[:20]:
            print(f"- {p}")


def bench_chaos(env, seconds):
    """For bench/run.py."""
    return run_chaos(env.BUILD, seconds, log=lambda m: print(m, file=sys.stderr, flush=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=int, default=600, help="seconds of faults")
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--rate", type=float, default=5.0, help="publishes a second per channel per host")
    ap.add_argument("--redis-persistence", choices=("aof", "none"), default="aof")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    result = run_chaos(os.path.abspath(args.build), args.seconds, args.channels, args.rate, args.redis_persistence,
                       args.seed, log=lambda m: print(m, file=sys.stderr, flush=True))
    print_table(result)
    if result:
        for start, kind, detail in result["events"]:
            print(f"  {start - result['events'][0][0]:7.1f} s  {kind}: {detail}", file=sys.stderr)
    sys.exit(0 if result and result["report"].ok else 1)


if __name__ == "__main__":
    main()
