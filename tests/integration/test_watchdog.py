"""The supervisor's internal watchdog: probes over a socketpair, heartbeats, suspects."""
import json
import os
import signal
import subprocess
import time
import unittest

from harness import BIN, SANITIZED, Supervisor, series, wait_for

FAST = '[watchdog]\ninterval = "300ms"\ntimeout = "500ms"\nfailures = 2\n'


def proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, Z...), None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def worker(sup, slot):
    return next(w for w in sup.status()["workers"] if w["id"] == slot and w["state"] != "draining")


class WatchdogTest(unittest.TestCase):
    def test_probes_report_latency(self):
        sup = Supervisor(workers=2, extra=FAST).start()
        try:
            wait_for(lambda: all(w["probes_ok"] >= 2 for w in sup.status()["workers"]), 5, what="probes")
            for w in sup.status()["workers"]:
                self.assertIsInstance(w["last_probe_ms"], float)
                self.assertLess(w["last_probe_ms"], 500)
            text = sup.ctl("metrics").stdout
            for w in sup.status()["workers"]:
                latency = series(text, "dingo_worker_probe_latency_seconds", worker=w["id"], pid=w["pid"])
                self.assertEqual(len(latency), 1, text)
                self.assertGreater(latency[0][1], 0)
                self.assertLess(latency[0][1], 0.5)
                ok = series(text, "dingo_worker_probes_ok_total", worker=w["id"], pid=w["pid"])
                self.assertGreaterEqual(ok[0][1], 2)
            self.assertRegex(sup.ctl("status").stdout, r"\d+\.\dms")  # the PROBE column
            # Probes are not client connections.
            wait_for(lambda: all(w["accepted"] == 0 for w in sup.status()["workers"]), 3, what="no accepted")
        finally:
            sup.cleanup()

    def test_a_sigstopped_worker_is_replaced(self):
        sup = Supervisor(workers=2, extra=FAST).start()
        try:
            victim = sup.worker_pids()[1]
            other = sup.worker_pids()[0]
            os.kill(victim, signal.SIGSTOP)
            wait_for(lambda: worker(sup, 1)["state"] == "suspect", 10, what="the stopped worker suspect")
            t0 = time.monotonic()
            wait_for(lambda: worker(sup, 1)["pid"] not in (0, victim) and worker(sup, 1)["state"] == "ready", 10,
                     what="a replacement")
            print(f"\nstopped worker: suspect, then replaced {time.monotonic() - t0:.2f}s later")
            self.assertEqual(worker(sup, 0)["pid"], other, "the healthy worker is untouched")
            self.assertIn("SIGABRT", sup.log())
        finally:
            sup.cleanup()

    def test_a_connection_storm_kills_no_healthy_worker(self):
        # Thousands of TLS handshakes in a few seconds keep both workers (and both
        # cores) busy; probes may time out, but heartbeats move, so nobody is killed.
        sup = Supervisor(workers=2, extra=FAST).start()
        try:
            pids = sup.worker_pids()
            out = subprocess.run([os.path.join(BIN, "tlsload"), "--port", str(sup.tls_port), "--threads", "64",
                                  "--seconds", "6", "--tls", "1.3"],
                                 capture_output=True, text=True, timeout=60)
            load = json.loads(out.stdout)
            print(f"\nstorm: {load}")
            # A storm, not a trickle (ASan's workers handshake several times slower).
            self.assertGreater(load.get("requests", 0), 250 if SANITIZED else 1000)
            time.sleep(1)
            st = sup.status()["workers"]
            self.assertEqual(sup.worker_pids(), pids, "a healthy worker was killed")
            self.assertEqual([w["restarts"] for w in st], [0, 0])
            if not SANITIZED:  # a timing figure: ASan's slowdown makes some probes miss their deadline
                self.assertEqual(sum(w["probes_failed"] for w in st), 0, st)
        finally:
            sup.cleanup()

    def test_never_more_than_the_fraction_at_once(self):
        # All four workers stopped: with max_kill_fraction 0.5 two are killed at a time,
        # and the other two wait their turn. The workers here ignore SIGABRT, so each
        # kill lasts until the SIGKILL 2 s later and can be watched from outside: the
        # supervisor sends SIGCONT with the SIGABRT, so a worker being killed is one of
        # the stopped ones that runs again and is not dead yet.
        fraction, workers = 0.5, 4
        allowed = max(1, int(fraction * workers))
        sup = Supervisor(workers=workers, extra=FAST + f"max_kill_fraction = {fraction}\n")
        wrapper = os.path.join(sup.dir, "gateway-ignoring-sigabrt")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\ntrap "" ABRT\nexec "{os.path.join(BIN, "dingo-gateway")}" "$@"\n')
        os.chmod(wrapper, 0o755)
        with open(sup.config) as f:
            text = f.read()
        with open(sup.config, "w") as f:
            f.write(text.replace("[supervisor]\n", f'[supervisor]\ngateway = "{wrapper}"\n', 1))
        sup.start()
        pids = {}
        try:
            pids = sup.worker_pids()
            for p in pids.values():
                os.kill(p, signal.SIGSTOP)
            wait_for(lambda: all(proc_state(p) == "T" for p in pids.values()), 10, what="all four stopped")
            killed_at_once, ever_killed = 0, set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = {p: proc_state(p) for p in pids.values()}
                being_killed = {p for p, st in states.items() if st not in ("T", "t", "Z", None)}
                ever_killed |= being_killed
                killed_at_once = max(killed_at_once, len(being_killed))
                if all(st in ("Z", None) for st in states.values()):
                    break
                time.sleep(0.02)  # sampling; each kill lasts about 2 s
            self.assertEqual(killed_at_once, allowed, f"workers killed at once (max_kill_fraction {fraction})")
            self.assertEqual(ever_killed, set(pids.values()), "every stopped worker killed in turn")
            self.assertIn("not killing worker", sup.log())
            wait_for(lambda: all(w["pid"] not in pids.values() and w["state"] == "ready"
                                 for w in sup.status()["workers"]), 30, what="all replaced")
        finally:
            for p in pids.values():
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
