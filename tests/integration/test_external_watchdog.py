"""dingo-watchdog: restarts a dead supervisor, holds its listeners, alerts, stands down."""
import errno
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import Supervisor, binary, terminate, wait_for

FAST = ["--interval", "200ms", "--timeout", "500ms", "--failures", "2"]


class ExternalWatchdogTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=2, tls=False)  # its config and ports; the watchdog starts it
        self.alert_file = os.path.join(self.sup.dir, "alert.env")
        self.wd_log = open(os.path.join(self.sup.dir, "watchdog.log"), "wb")
        self.wd = None

    def tearDown(self):
        if self.wd:
            terminate(self.wd)
        self.wd_log.close()
        # Whatever supervisor (and workers) the test left.
        try:
            for w in self.sup.status()["workers"]:
                os.kill(w["pid"], signal.SIGKILL)
        except Exception:
            pass
        self.sup.proc = None
        self.sup.cleanup()

    def start(self, *extra):
        cmd = f'"{binary("dingo-supervisor")}" --config "{self.sup.config}"'
        self.wd = subprocess.Popen([binary("dingo-watchdog"), "--config", self.sup.config, "--exec", cmd,
                                    "--on-alert", f"env | grep DINGO_WATCHDOG_ > {self.alert_file}", *FAST, *extra],
                                   stdout=self.wd_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return wait_for(self.ready_pid, 10, what="the supervisor up")

    def ready_pid(self):
        try:
            st = self.sup.status()
        except ValueError:
            return None
        if sum(w["state"] == "ready" for w in st["workers"]) == 2:
            return st["pid"]
        return None

    def log(self):
        with open(os.path.join(self.sup.dir, "watchdog.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def test_exec_restarts_a_killed_supervisor_and_alerts(self):
        first = self.start()
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (lambda p: p if p and p != first else None)(self.ready_pid()), 15,
                          what="a new supervisor")
        self.assertNotEqual(first, second)
        wait_for(lambda: os.path.exists(self.alert_file), 5, what="the alert hook")
        with open(self.alert_file) as f:
            env = dict(line.strip().split("=", 1) for line in f if "=" in line)
        self.assertEqual(env["DINGO_WATCHDOG_EVENT"], "restart")
        self.assertIn("signal 9", env["DINGO_WATCHDOG_DETAIL"])

    def test_hold_listeners_refuses_no_connection_across_a_restart(self):
        first = self.start("--hold-listeners")
        self.assertIn("socket passed with LISTEN_FDS", self.log())  # the supervisor logs into ours
        stop = threading.Event()
        # Every outcome but a 200 is counted, by kind, and each kind must stay at zero.
        served = [0]
        failed = {"refused": [], "reset": [], "timeout": [], "closed unanswered": [], "not 200": [], "other": []}

        def one_request():
            try:
                s = socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=15)
            except ConnectionRefusedError:
                failed["refused"].append(1)
                return
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    served[0] += 1
                elif not data:
                    failed["closed unanswered"].append(1)
                else:
                    failed["not 200"].append(data[:40])
            except ConnectionResetError as e:
                failed["reset"].append(repr(e))
            except socket.timeout as e:
                failed["timeout"].append(repr(e))
            finally:
                s.close()

        def client():
            while not stop.is_set():
                try:
                    one_request()
                except Exception as e:  # anything else: counted, never a silent end of the thread
                    failed["other"].append(repr(e))
                time.sleep(0.002)  # pacing: a steady stream of new connections, not a flood

        t = threading.Thread(target=client)
        t.start()
        try:
            wait_for(lambda: served[0] >= 30, 10, what="requests served before the kill")
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: (lambda p: p if p and p != first else None)(self.ready_pid()), 15,
                     what="a new supervisor")
            after = served[0]
            wait_for(lambda: served[0] >= after + 40, 10, what="requests served by the new supervisor")
        finally:
            stop.set()
            t.join()
        print(f"\nacross the restart: {served[0]} served, " +
              ", ".join(f"{len(v)} {k}" for k, v in failed.items()))
        self.assertEqual({k: v for k, v in failed.items() if v}, {})
        self.assertGreater(served[0], 50)

    def test_stands_down_during_a_reload_and_stops_with_a_planned_stop(self):
        first = self.start()
        for i in range(3):
            old = {w["pid"] for w in self.sup.status()["workers"]}
            r = self.sup.ctl("reload")
            self.assertEqual(r.returncode, 0, r.stderr)

            def reloaded():
                st = self.sup.status()
                ws = [w for w in st["workers"] if w["state"] != "draining"]
                return (not st["reloading"] and st["generation"] == i + 2 and len(ws) == 2 and
                        all(w["state"] == "ready" and w["pid"] not in old for w in ws))
            wait_for(reloaded, 15, what=f"reload {i + 1} done")
        self.assertEqual(self.ready_pid(), first)
        self.assertNotIn("restarting the supervisor", self.log())
        self.assertEqual(self.sup.ctl("stop").returncode, 0)
        self.assertEqual(self.wd.wait(timeout=20), 0)
        self.assertIn("exited normally", self.log())

    def test_restart_cmd_runs_when_the_pid_file_names_a_dead_process(self):
        marker = os.path.join(self.sup.dir, "restarted")
        pidfile = os.path.join(self.sup.dir, "dead.pid")
        with open(pidfile, "w") as f:
            f.write("999999\n")
        self.wd = subprocess.Popen([binary("dingo-watchdog"), "--pidfile", pidfile,
                                    "--restart-cmd", f"touch {marker}", *FAST],
                                   stdout=self.wd_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(marker), 10, what="the restart command")
        self.assertIn("is gone", self.log())

    def test_bad_options_exit_2(self):
        r = subprocess.run([binary("dingo-watchdog"), "--check", "ftp://x"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("ftp://x", r.stderr)
        r = subprocess.run([binary("dingo-watchdog"), "--interval", "soon", "--pidfile", "/x"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([binary("dingo-watchdog"), "--hold-listeners", "--pidfile", "/x"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
