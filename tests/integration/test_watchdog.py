"""The supervisor's internal watchdog: probes over a socketpair, heartbeats, suspects."""
import json
import os
import signal
import subprocess
import time
import unittest

from harness import BIN, SANITIZED, Supervisor, wait_for

FAST = '[watchdog]\ninterval = "300ms"\ntimeout = "500ms"\nfailures = 2\n'


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
            self.assertIn("dingo_worker_probe_latency_seconds", sup.ctl("metrics").stdout)
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
        # All four workers stopped: with max_kill_fraction 0.25 only one is killed at a
        # time, and the rest wait their turn.
        sup = Supervisor(workers=4, extra=FAST + "max_kill_fraction = 0.25\n").start()
        try:
            pids = sup.worker_pids()
            for p in pids.values():
                os.kill(p, signal.SIGSTOP)
            wait_for(lambda: "not killing worker" in sup.log(), 15, what="the cap holding back")
            wait_for(lambda: all(w["pid"] not in pids.values() and w["state"] == "ready"
                                 for w in sup.status()["workers"]), 30, what="all replaced, one by one")
        finally:
            for p in pids.values():
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
