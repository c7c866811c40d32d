"""Reload (dingoctl reload, SIGHUP) and drain-worker: rolling, nothing dropped."""
import http.client
import json
import signal
import threading
import time
import unittest

from harness import Supervisor, http_get, wait_for
from test_pubsub import publish
from wsclient import Closed, WsClient


def current(sup):
    """The workers that hold the slots now (replaced ones still draining are left out)."""
    return {w["id"]: w for w in sup.status()["workers"] if w["state"] != "draining"}


def reloaded(sup, old_pids, generation):
    ws = current(sup)
    return (len(ws) == sup.workers and all(w["state"] == "ready" and w["generation"] == generation
                                            and w["pid"] not in old_pids.values() for w in ws.values()))


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=2, gateway_extra="client_publish = true\n").start()

    def tearDown(self):
        self.sup.cleanup()

    def test_reload_under_load_fails_nothing_and_replaces_every_worker(self):
        port = self.sup.http_port
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        stop = threading.Event()
        failures, done = [], [0]

        def client():
            while not stop.is_set():
                try:
                    status, _, _ = http_get(port, "/healthz", timeout=5)
                    if status != 200:
                        failures.append(status)
                    done[0] += 1
                except OSError as e:
                    failures.append(repr(e))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        r = self.sup.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"generation {gen + 1}", r.stdout)
        wait_for(lambda: reloaded(self.sup, old, gen + 1), 10, what="every worker replaced")
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(failures, [], f"{len(failures)} failed of {done[0]}")
        self.assertGreater(done[0], 100)
        # The replaced workers drain out.
        wait_for(lambda: all(w["state"] != "draining" for w in self.sup.status()["workers"]), 10,
                 what="the old generation gone")

    def test_a_bad_config_keeps_the_running_generation(self):
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        with open(self.sup.config, "a") as f:
            f.write('\nidle_timeout = "forever"\n')
        r = self.sup.ctl("reload")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"dingo\.toml:\d+: key 'gateway\.idle_timeout'")
        # SIGHUP says the same in the log and changes nothing either.
        self.sup.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.sup.log().count("reload refused") >= 2, 5, what="both refusals logged")
        time.sleep(0.3)
        self.assertEqual(self.sup.worker_pids(), old)
        self.assertEqual(self.sup.status()["generation"], gen)
        self.assertEqual(http_get(self.sup.http_port)[0], 200)

    def test_a_listener_change_needs_a_restart(self):
        text = open(self.sup.config).read().replace(f"127.0.0.1:{self.sup.http_port}", "127.0.0.1:1")
        with open(self.sup.config, "w") as f:
            f.write(text)
        r = self.sup.ctl("reload")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("[[listen]]", r.stderr)

    def test_sighup_reloads_and_new_settings_apply_hub_keeps_positions(self):
        port = self.sup.http_port
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        ws = WsClient(port)
        sub = ws.command("subscribe", channel="/reload")
        _, p1 = publish(port, "/reload", "before")
        self.assertEqual(ws.next_message()["position"], p1["position"])
        with open(self.sup.config, "a") as f:
            f.write('publish_token = "t0ken"\n')  # lands in [gateway], the last table
        self.sup.proc.send_signal(signal.SIGHUP)
        # The WebSocket on the old worker is told to come back, then closed with 1012.
        ws.sock.settimeout(10)
        m = ws.recv_json()
        self.assertEqual(m["event"], "reconnect")
        with self.assertRaises(Closed) as cm:
            ws.recv_frame()
        self.assertEqual(cm.exception.code, 1012)
        ws.sock.close()
        wait_for(lambda: reloaded(self.sup, old, gen + 1), 10, what="every worker replaced")
        self.assertEqual(publish(port, "/reload", "x")[0], 401)  # the new workers need the token
        status, p2 = publish(port, "/reload", "after", token="t0ken")
        self.assertEqual(status, 200)
        # The hub lives in the supervisor: positions go on, and resuming works across it.
        ws = WsClient(port)
        r = ws.command("subscribe", channel="/reload", since=p1["position"])
        self.assertTrue(r["recovered"])
        self.assertEqual([x["data"] for x in r["messages"]], ["after"])
        self.assertEqual(sub["position"].split(".")[0], p2["position"].split(".")[0])
        ws.close()

    def test_drain_worker_replaces_one_slot_only(self):
        old = self.sup.worker_pids()
        r = self.sup.ctl("drain-worker", "1")
        self.assertEqual(r.returncode, 0, r.stderr)

        def replaced():
            ws = current(self.sup)
            return len(ws) == 2 and ws[1]["pid"] != old[1] and ws[1]["state"] == "ready"
        wait_for(replaced, 10, what="worker 1 replaced")
        self.assertEqual(current(self.sup)[0]["pid"], old[0])
        r = self.sup.ctl("drain-worker", "7")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no worker 7", r.stderr)


if __name__ == "__main__":
    unittest.main()


class UpgradeTest(unittest.TestCase):
    def test_upgrade_under_load_refuses_nothing(self):
        import os
        import socket as sk
        sup = Supervisor(workers=2, tls=False).start()
        new_pid = None
        try:
            old = sup.status()["pid"]
            stop = threading.Event()
            refused, served, other = [], [0], []

            def client():
                while not stop.is_set():
                    try:
                        s = sk.create_connection(("127.0.0.1", sup.http_port), timeout=10)
                    except ConnectionRefusedError:
                        refused.append(1)
                        continue
                    try:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if s.recv(4096).startswith(b"HTTP/1.1 200"):
                            served[0] += 1
                        else:
                            other.append("bad answer")
                    except OSError as e:
                        other.append(repr(e))
                    finally:
                        s.close()

            threads = [threading.Thread(target=client) for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            r = sup.ctl("upgrade")
            self.assertEqual(r.returncode, 0, r.stderr)

            def taken_over():
                try:
                    st = sup.status()
                except ValueError:
                    return None
                ready = sum(w["state"] == "ready" for w in st["workers"]) == 2
                return st["pid"] if st["pid"] != old and ready else None
            new_pid = wait_for(taken_over, 10, what="the new supervisor")
            sup.proc.wait(timeout=10)  # the old one drains and exits
            time.sleep(0.3)
            stop.set()
            for t in threads:
                t.join()
            print(f"\nupgrade under load: {served[0]} served, {len(refused)} refused, {len(other)} other {other[:3]}")
            self.assertEqual(refused, [])
            self.assertEqual(other, [])
            self.assertGreater(served[0], 50)
            with open(sup.pid_file) as f:
                self.assertEqual(int(f.read()), new_pid)
            self.assertEqual(http_get(sup.http_port)[0], 200)
        finally:
            if new_pid:
                try:
                    for w in sup.status()["workers"]:
                        os.kill(w["pid"], signal.SIGKILL)
                except Exception:
                    pass
                os.kill(new_pid, signal.SIGKILL)
            sup.cleanup()
