"""The kernel accept mode ([supervisor] accept = "kernel"): every worker slot has its own
SO_REUSEPORT listening socket, a CBPF program picks the slot, the workers accept
themselves, and the supervisor steps in only for slots whose worker is suspect or down
past the grace."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import Supervisor, binary, http_get, healthz_worker, wait_for
from test_reload import Load, current, reloaded

KERNEL = 'accept = "kernel"\n'


def sources(n, start=2):
    """n distinct loopback source addresses across 127.0.0.0/8."""
    return [f"127.{1 + i // 200}.{(start + i * 7) % 250 + 1}.{(i * 13) % 250 + 2}" for i in range(n)]


def handed(sup):
    return sup.status()["handoff"]["handed"]


def raw_request(port, source, timeout=10):
    """A request on a fresh connection from `source`; returns the JSON body of /healthz.
    A refused or reset connection raises."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"answer {head[:40]!r}")
    return json.loads(body)


class IpHashTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=4, dispatch="ip-hash", tls=False, supervisor_extra=KERNEL).start()

    def tearDown(self):
        self.sup.cleanup()

    def test_each_source_address_sticks_to_one_worker_without_the_supervisor(self):
        st = self.sup.status()
        self.assertEqual(st["accept"]["mode"], "kernel", st["accept"])
        before = handed(self.sup)
        by_source = {}
        for src in sources(24):
            seen = {healthz_worker(self.sup.http_port, source=src)["worker"] for _ in range(4)}
            self.assertEqual(len(seen), 1, f"{src} landed on {seen}")
            by_source[src] = seen.pop()
        self.assertGreaterEqual(len(set(by_source.values())), 3, f"24 addresses on {set(by_source.values())}")
        # The supervisor handed nothing off: the workers accepted every connection.
        self.assertEqual(handed(self.sup), before)
        # ...and the workers say so (in their next stats report, once a second).
        wait_for(lambda: sum(w["accepted"] for w in self.sup.status()["workers"]) >= 24 * 4, 5,
                 what="the workers' accepted counts")

    def test_kill_9_refuses_nothing_and_the_slots_clients_wait_for_the_replacement(self):
        by_source = {src: healthz_worker(self.sup.http_port, source=src)["worker"] for src in sources(24)}
        victim_slot = by_source[sources(1)[0]]
        mine = [s for s, w in by_source.items() if w == victim_slot]
        others = [s for s, w in by_source.items() if w != victim_slot]
        victim = self.sup.worker_pids()[victim_slot]
        results, errors = [], []

        def client(src):
            try:
                results.append((src, raw_request(self.sup.http_port, src, timeout=15)))
            except Exception as e:  # noqa: BLE001 (every failure is reported)
                errors.append(f"{src}: {e!r}")

        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        threads = []
        # Connections made while the slot has no worker: some to it, some to the others.
        for i in range(30):
            src = (mine if i % 2 == 0 else others)[i % len(mine if i % 2 == 0 else others)]
            t = threading.Thread(target=client, args=(src,))
            t.start()
            threads.append(t)
            time.sleep(0.01)
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - t0
        self.assertEqual(errors, [], "refused or failed")
        self.assertEqual(len(results), 30)
        new_pid = self.sup.worker_pids()[victim_slot]
        self.assertNotEqual(new_pid, victim)
        for src, j in results:
            # Every client of the dead slot waited in its queue for the replacement; the
            # other clients stayed where they were.
            self.assertEqual(j["worker"], by_source[src], f"{src} moved")
            if by_source[src] == victim_slot:
                self.assertEqual(j["pid"], new_pid)
        print(f"\nkill -9 under 30 new connections: 0 refused, all served in {elapsed * 1000:.0f} ms")

    def test_a_suspect_worker_gets_no_new_connections(self):
        self.sup.cleanup()
        self.sup = Supervisor(workers=2, dispatch="ip-hash", tls=False, supervisor_extra=KERNEL,
                              extra='[watchdog]\ninterval = "1s"\ntimeout = "500ms"\nfailures = 2\n').start()
        by_source = {src: healthz_worker(self.sup.http_port, source=src)["worker"] for src in sources(16)}
        victim = self.sup.worker_pids()[1]
        self.assertIn(1, by_source.values())
        os.kill(victim, signal.SIGSTOP)
        early = None
        try:
            # A client of the stopped worker's slot that comes before the watchdog's
            # verdict waits in that slot's queue; once the worker is suspect the
            # supervisor takes the queue over and hands the client to the other worker.
            mine = next(src for src, w in by_source.items() if w == 1)
            early = socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=15, source_address=(mine, 0))
            early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

            def suspect():
                return next(w for w in self.sup.status()["workers"] if w["id"] == 1)["state"] == "suspect"
            wait_for(suspect, 10, interval=0.02, what="the stopped worker suspect")
            served = [raw_request(self.sup.http_port, src, timeout=2) for src in sources(16)]
            # All within the 2 s timeout, all by the healthy worker (the stopped one would
            # never have answered).
            self.assertEqual({j["worker"] for j in served}, {0})
            self.assertEqual(next(w for w in self.sup.status()["workers"] if w["id"] == 1)["pid"], victim,
                             "the test ran after the watchdog's kill: too slow to tell")
            data = b""
            while True:
                chunk = early.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
            self.assertEqual(json.loads(data.partition(b"\r\n\r\n")[2])["worker"], 0)
            self.assertGreaterEqual(handed(self.sup), 1)
        finally:
            if early:
                early.close()
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass


class UnderLoadTest(unittest.TestCase):
    def test_reload_under_load_fails_nothing(self):
        sup = Supervisor(workers=2, tls=False, supervisor_extra=KERNEL).start()
        try:
            old = sup.worker_pids()
            gen = sup.status()["generation"]
            failures, done = [], [0]

            def client():
                status, _, _ = http_get(sup.http_port, "/healthz", timeout=5)
                if status != 200:
                    failures.append(status)
                done[0] += 1

            load = Load(client, 4)
            try:
                wait_for(lambda: load.ok() and done[0] >= 50, 10, what="load before the reload")
                r = sup.ctl("reload")
                self.assertEqual(r.returncode, 0, r.stderr)
                wait_for(lambda: reloaded(sup, old, gen + 1), 15, what="every worker replaced")
                after = done[0]
                wait_for(lambda: load.ok() and done[0] >= after + 50, 10, what="load after the reload")
                wait_for(lambda: all(w["state"] != "draining" for w in sup.status()["workers"]), 10,
                         what="the old generation gone")
                after = done[0]
                wait_for(lambda: load.ok() and done[0] >= after + 50, 10, what="load with the new generation alone")
            finally:
                errors = load.finish()
            self.assertEqual(errors, [])
            self.assertEqual(failures, [])
            # The new generation accepts by itself (its stats come once a second).
            wait_for(lambda: all(w["accepted"] > 0 for w in current(sup).values()), 5,
                     what="both new workers accepting")
            print(f"\nreload under load (kernel accept): {done[0]} served, 0 failed")
        finally:
            sup.cleanup()

    def test_upgrade_under_load_refuses_nothing(self):
        sup = Supervisor(workers=2, tls=False, supervisor_extra=KERNEL).start()
        new_pid, load = None, None
        try:
            old = sup.status()["pid"]
            refused, served, other = [], [0], []

            def client():
                try:
                    j = raw_request(sup.http_port, "127.0.0.1")
                    served[0] += 1 if j["status"] == "ok" else 0
                except ConnectionRefusedError:
                    refused.append(1)
                except (OSError, AssertionError) as e:
                    other.append(repr(e))

            load = Load(client, 3)
            wait_for(lambda: load.ok() and served[0] >= 30, 10, what="load before the upgrade")
            r = sup.ctl("upgrade")
            self.assertEqual(r.returncode, 0, r.stderr)

            def taken_over():
                try:
                    st = sup.status()
                except ValueError:
                    return None
                ready = sum(w["state"] == "ready" for w in st["workers"]) == 2
                return st["pid"] if st["pid"] != old and ready else None
            new_pid = wait_for(taken_over, 15, what="the new supervisor")
            sup.proc.wait(timeout=15)  # the old one drains and exits
            after = served[0]
            wait_for(lambda: load.ok() and served[0] >= after + 30, 10, what="load after the upgrade")
            self.assertEqual(load.finish(), [])
            load = None
            print(f"\nupgrade under load (kernel accept): {served[0]} served, {len(refused)} refused, "
                  f"{len(other)} other {other[:3]}")
            self.assertEqual(refused, [])
            self.assertEqual(other, [])
            st = sup.status()
            self.assertEqual(st["accept"]["mode"], "kernel", st["accept"])
            # The new supervisor's workers accept from the sockets the old one passed.
            before = st["handoff"]["handed"]
            for src in sources(10):
                healthz_worker(sup.http_port, source=src)
            self.assertEqual(sup.status()["handoff"]["handed"], before)
        finally:
            if load:
                load.stop.set()
            if new_pid:
                try:
                    for w in sup.status()["workers"]:
                        os.kill(w["pid"], signal.SIGKILL)
                except Exception:
                    pass
                os.kill(new_pid, signal.SIGKILL)
            sup.cleanup()


class PassedSocketTest(unittest.TestCase):
    def test_a_passed_reuseport_socket_becomes_slot_0_and_its_queue_is_served(self):
        # systemd's ReusePort=yes, or an upgrade: a passed socket with SO_REUSEPORT is the
        # first socket of the group; the supervisor opens the other slots beside it.
        sup = Supervisor(workers=2, tls=False, supervisor_extra=KERNEL)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", sup.http_port))
        listener.listen(128)
        early = socket.create_connection(("127.0.0.1", sup.http_port), timeout=10)
        early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        fd = listener.fileno()

        def put_on_fd3():
            os.dup2(fd, 3)
            os.set_inheritable(3, True)

        log = open(sup.log_path, "wb")
        cmd = f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{binary("dingo-supervisor")}" --config "{sup.config}"'
        proc = subprocess.Popen(["/bin/sh", "-c", cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=put_on_fd3, pass_fds=tuple({fd, 3}))
        sup.proc, sup.log_file = proc, log
        try:
            listener.close()
            data = b""
            while True:
                chunk = early.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
            self.assertEqual(json.loads(data.partition(b"\r\n\r\n")[2])["worker"], 0, "slot 0 owns the passed socket")
            sup.wait_ready()
            st = sup.status()
            self.assertEqual(st["accept"]["mode"], "kernel", sup.log())
            self.assertIn("kernel accept: 2 SO_REUSEPORT sockets, socket passed with LISTEN_FDS", sup.log())
            seen = {healthz_worker(sup.http_port, source=src)["worker"] for src in sources(16)}
            self.assertEqual(seen, {0, 1})
            self.assertEqual(sup.status()["handoff"]["handed"], 0)
        finally:
            early.close()
            sup.cleanup()


class LeastConnTest(unittest.TestCase):
    def test_least_conn_stays_with_the_hand_off(self):
        sup = Supervisor(workers=2, dispatch="least-conn", tls=False, supervisor_extra=KERNEL).start()
        try:
            before = handed(sup)
            for _ in range(10):
                healthz_worker(sup.http_port)
            self.assertEqual(handed(sup), before + 10)
            self.assertEqual(sup.status()["accept"]["mode"], "handoff")
        finally:
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
