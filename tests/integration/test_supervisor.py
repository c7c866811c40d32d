"""dingo-supervisor with real dingo-gateway workers on loopback."""
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import unittest

from harness import (Supervisor, binary, certs, count_fds, http_get, healthz_worker, metrics_problems,
                     promtool_check, series, wait_for)
from wsclient import WsClient


def tls_handshake(port, version, *options):
    """openssl s_client pinned to one TLS version (-tls1_1, -tls1_2...) at security level 0,
    where the client allows every version and cipher it knows, with further s_client
    options: (handshake done, output)."""
    r = subprocess.run(["openssl", "s_client", version, "-cipher", "DEFAULT:@SECLEVEL=0", *options,
                        "-connect", f"127.0.0.1:{port}", "-servername", "localhost"],
                       input=b"", capture_output=True, timeout=10)
    out = (r.stdout + r.stderr).decode(errors="replace")
    return re.search(r"\nNew, TLSv[\d.]+, Cipher is (?!\(NONE\))", out) is not None, out


class SharedSupervisorTest(unittest.TestCase):
    """Tests that leave the supervisor as they found it share one instance."""

    @classmethod
    def setUpClass(cls):
        cls.sup = Supervisor(workers=2, dispatch="round-robin",
                             gateway_extra='header_timeout = "1s"').start()

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def test_connections_spread_over_both_workers(self):
        seen = [healthz_worker(self.sup.http_port)["worker"] for _ in range(40)]
        if self.sup.status()["accept"]["mode"] == "handoff":
            self.assertEqual(seen.count(0), 20, seen)  # the supervisor's cursor alternates
            self.assertEqual(seen.count(1), 20, seen)
        else:
            # The kernel picks a slot at random (CBPF keeps no counter): about even.
            self.assertGreaterEqual(seen.count(0), 8, seen)
            self.assertGreaterEqual(seen.count(1), 8, seen)

    def test_healthz_reports_the_worker(self):
        status, body, headers = http_get(self.sup.http_port)
        self.assertEqual(status, 200)
        j = json.loads(body)
        self.assertEqual(j["status"], "ok")
        self.assertIn(j["pid"], self.sup.worker_pids().values())
        self.assertEqual(headers["Content-Type"], "application/json")

    def test_unknown_path_is_a_json_404(self):
        status, body, _ = http_get(self.sup.http_port, "/nope")
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"]["code"], "not_found")

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sup.http_port, timeout=5)
        workers = set()
        for _ in range(50):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            workers.add(json.loads(r.read())["worker"])
        conn.close()
        self.assertEqual(len(workers), 1)  # one connection, one worker

    def test_garbage_request_gets_400_and_is_closed(self):
        with socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=5) as s:
            s.sendall(b"HELLO WORLD \x00\x01\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break  # closed by the server
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400"), data)
        self.assertEqual(json.loads(body)["error"]["code"], "bad_request")

    def test_oversized_header_is_refused(self):
        with socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            data = s.recv(4096)
        self.assertTrue(data.startswith(b"HTTP/1.1 431"), data)
        self.assertIn(b'"too_large"', data)

    def test_silent_client_is_closed_at_the_header_deadline(self):
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=10) as s:
            # No response: cut with a reset (a client that never sends is a slowloris).
            with self.assertRaises(ConnectionResetError):
                s.recv(1)
        elapsed = time.monotonic() - t0
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 5)

    def test_slow_header_is_closed_at_the_header_deadline(self):
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            for _ in range(20):  # one header byte now and then, never finishing
                try:
                    s.sendall(b"X")
                except OSError:
                    break
                time.sleep(0.2)  # the slow sender is what is tested: a byte every 200 ms
                if time.monotonic() - t0 > 3:
                    break
            s.settimeout(5)
            try:
                rest = s.recv(100)
            except ConnectionResetError:
                rest = b""
            self.assertEqual(rest, b"")
        self.assertLess(time.monotonic() - t0, 5)

    def test_tls_session_resumes_on_the_other_worker(self):
        ca = os.path.join(certs(), "ca.pem")
        for version in ("-tls1_3", "-tls1_2"):
            sess = os.path.join(self.sup.dir, f"sess{version}.pem")
            outputs = []
            for flag in ("-sess_out", "-sess_in"):
                r = subprocess.run(
                    ["openssl", "s_client", version, "-connect", f"127.0.0.1:{self.sup.tls_port}",
                     "-servername", "localhost", "-CAfile", ca, "-verify_return_error",
                     flag, sess, "-ign_eof"],
                    input=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    capture_output=True, timeout=10)
                outputs.append(r.stdout.decode(errors="replace"))
                if flag == "-sess_in":
                    # Round-robin: the next connection in handoff mode; one of the next
                    # few in kernel mode (the kernel picks at random).
                    w1 = json.loads(re.search(r'\{"status".*?\}', outputs[0]).group(0))["worker"]
                    for _ in range(12):
                        w = json.loads(re.search(r'\{"status".*?\}', outputs[-1]).group(0))["worker"]
                        self.assertRegex(outputs[-1], r"\nReused, TLSv1\.[23]", outputs[-1])
                        if w != w1:
                            break
                        outputs.append(subprocess.run(r.args, input=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                                      b"Connection: close\r\n\r\n", capture_output=True,
                                                      timeout=10).stdout.decode(errors="replace"))
            first, second = outputs[0], outputs[-1]
            self.assertRegex(first, r"\nNew, TLSv1\.[23]")
            self.assertRegex(second, r"\nReused, TLSv1\.[23]", second)
            w1 = json.loads(re.search(r'\{"status".*?\}', first).group(0))["worker"]
            w2 = json.loads(re.search(r'\{"status".*?\}', second).group(0))["worker"]
            self.assertNotEqual(w1, w2, "round-robin should land the resumption on the other worker")

    def test_tls13_resumes_again_and_again(self):
        # A TLS 1.3 client uses each ticket once: every resumption must hand out a new one.
        ca = os.path.join(certs(), "ca.pem")
        sess = [os.path.join(self.sup.dir, f"chain{i}.pem") for i in range(4)]
        for i in range(4):
            args = ["openssl", "s_client", "-tls1_3", "-connect", f"127.0.0.1:{self.sup.tls_port}",
                    "-servername", "localhost", "-CAfile", ca, "-sess_out", sess[i], "-ign_eof"]
            if i > 0:
                args += ["-sess_in", sess[i - 1]]
            r = subprocess.run(args, input=b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                               capture_output=True, timeout=10)
            out = r.stdout.decode(errors="replace")
            self.assertIn("\nNew, " if i == 0 else "\nReused, ", out, f"connection {i}")

    def test_tls_serves_rsa_and_ecdsa_and_negotiates_http11(self):
        ca = os.path.join(certs(), "ca.pem")
        for sigalgs, key_type in (("ECDSA+SHA256", "id-ecPublicKey"), ("RSA-PSS+SHA256:RSA+SHA256", "rsaEncryption")):
            r = subprocess.run(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{self.sup.tls_port}",
                 "-servername", "localhost", "-CAfile", ca, "-verify_return_error",
                 "-sigalgs", sigalgs, "-alpn", "h2,http/1.1", "-showcerts"],
                input=b"", capture_output=True, timeout=10)
            out = r.stdout.decode(errors="replace")
            self.assertIn("ALPN protocol: http/1.1", out)
            self.assertIn("Verify return code: 0 (ok)", out)
            cert = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S).group(0)
            text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=cert.encode(),
                                  capture_output=True).stdout.decode()
            self.assertIn(key_type, text)

    def test_tls13_picks_aes128_whatever_the_client_lists_first(self):
        # OpenSSL's client lists TLS_AES_256_GCM_SHA384 first; the server's order decides.
        ok, out = tls_handshake(self.sup.tls_port, "-tls1_3", "-ciphersuites",
                                "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256")
        self.assertTrue(ok, out)
        self.assertIn("Cipher is TLS_AES_128_GCM_SHA256", out)
        # A client without AES-128 still gets one of the others.
        ok, out = tls_handshake(self.sup.tls_port, "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
        self.assertTrue(ok, out)
        self.assertIn("Cipher is TLS_CHACHA20_POLY1305_SHA256", out)

    def test_tls_below_1_2_is_refused(self):
        # At its default security level OpenSSL's client will not speak TLS 1.1 at all,
        # so only a client at @SECLEVEL=0 shows that the server is the one refusing.
        # The same client, pinned to TLS 1.2, gets through: the version alone decides.
        ok, out = tls_handshake(self.sup.tls_port, "-tls1_2")
        self.assertTrue(ok, out)
        self.assertIn("Protocol  : TLSv1.2", out)
        ok, out = tls_handshake(self.sup.tls_port, "-tls1_1")
        self.assertFalse(ok, out)
        self.assertNotIn("no protocols available", out)  # the ClientHello was sent
        self.assertRegex(out, r"written [1-9]\d* bytes")

    def test_dingoctl_status_table_and_json(self):
        healthz_worker(self.sup.http_port)
        wait_for(lambda: sum(w["accepted"] for w in self.sup.status()["workers"]) > 0, 10,
                 what="a stats report that counts the request")
        r = self.sup.ctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertRegex(lines[0], r"^supervisor  pid \d+  version \S+  uptime \S+  generation 1  dispatch round-robin$")
        self.assertIn(f"127.0.0.1:{self.sup.http_port} (plain,", lines[1])
        self.assertIn(f"127.0.0.1:{self.sup.tls_port} (tls,", lines[1])
        header = next(l for l in lines if l.startswith("ID"))
        self.assertEqual(header.split(), ["ID", "PID", "STATE", "CONNS", "ACCEPTED", "REQ/S", "IN",
                                          "OUT", "RSS", "CPU%", "RESTARTS", "PROBE"])
        rows = [l.split() for l in lines[lines.index(header) + 1:]]
        self.assertEqual([row[0] for row in rows], ["0", "1"])
        self.assertTrue(all(row[2] == "ready" for row in rows))
        st = self.sup.status()
        for w in st["workers"]:
            for key in ("id", "pid", "state", "connections", "accepted", "requests_per_s", "bytes_in",
                        "bytes_out", "rss_bytes", "cpu_percent", "restarts", "last_probe_ms"):
                self.assertIn(key, w)
            self.assertGreater(w["rss_bytes"], 1 << 20)
        self.assertGreater(sum(w["accepted"] for w in st["workers"]), 0)
        self.assertGreater(sum(w["bytes_out"] for w in st["workers"]), 0)

    def test_metrics_pass_promtool(self):
        status, body, headers = http_get(self.sup.admin_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        ok, out = promtool_check(text)
        self.assertTrue(ok, out)
        self.assertEqual(metrics_problems(text), [])
        self.assertEqual(series(text, "dingo_workers", state="ready"), [({"state": "ready"}, 2)])
        r = self.sup.ctl("metrics")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(metrics_problems(r.stdout), [])
        # One series per worker process, labelled with its slot and its pid.
        pids = self.sup.worker_pids()
        for slot, pid in pids.items():
            found = series(r.stdout, "dingo_worker_resident_memory_bytes", worker=slot)
            self.assertEqual([l["pid"] for l, _ in found], [str(pid)], found)
            self.assertGreater(found[0][1], 1 << 20)

    def test_probes_served_are_counted(self):
        def probed():
            ws = self.sup.status()["workers"]
            return ws if all(w["probes_served"] > 0 for w in ws) else None
        ws = wait_for(probed, 20, what="watchdog probes counted by the workers")
        text = self.sup.ctl("metrics").stdout
        for w in ws:
            found = series(text, "dingo_worker_probes_served_total", worker=w["id"], pid=w["pid"])
            self.assertEqual(len(found), 1, text)
            self.assertGreater(found[0][1], 0)
            # Never re-attached: these workers were started by this supervisor.
            self.assertEqual(w["reattached"], 0)
            self.assertEqual(series(text, "dingo_worker_reattachments_total", worker=w["id"])[0][1], 0)

    def test_admin_healthz(self):
        status, body, _ = http_get(self.sup.admin_port, "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["workers_ready"], 2)

    def test_supervisor_fd_count_is_unchanged_after_10000_connections(self):
        pid = self.sup.proc.pid
        healthz_worker(self.sup.http_port)
        before = count_fds(pid)

        def batch(n):
            for i in range(n):
                with socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=10) as s:
                    if i % 2 == 0:
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        while s.recv(4096):
                            pass
                    else:
                        # connect and reset at once
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return n

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            total = sum(pool.map(batch, [1250] * 8))
        self.assertEqual(total, 10000)
        wait_for(lambda: count_fds(pid) == before, 5, what=f"supervisor fds back to {before}")
        st = self.sup.status()
        self.assertEqual(st["handoff"]["dropped"], 0)
        if st["accept"]["mode"] == "handoff":
            self.assertGreaterEqual(st["listeners"][0]["accepted"], 10000)
        else:  # the workers accepted them (their stats come once a second)
            wait_for(lambda: sum(w["accepted"] for w in self.sup.status()["workers"]) >= 10000, 5,
                     what="10000 accepted by the workers")


class MaxConnectionsTest(unittest.TestCase):
    def test_connections_refused_at_max_connections_are_counted(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra="max_connections = 2").start()
        held = []
        try:
            for _ in range(2):  # keep-alive connections: they stay open, and count
                s = socket.create_connection(("127.0.0.1", sup.http_port), timeout=5)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertIn(b"200 OK", s.recv(4096))
                held.append(s)
            # The third is closed unanswered.
            with socket.create_connection(("127.0.0.1", sup.http_port), timeout=5) as s:
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"")
            w = wait_for(lambda: (lambda w: w if w["rejected"] >= 1 else None)(sup.status()["workers"][0]), 10,
                         what="the refusal in dingoctl status --json")
            self.assertEqual(w["rejected"], 1)
            self.assertEqual(w["connections"], 2)
            text = sup.ctl("metrics").stdout
            self.assertEqual(series(text, "dingo_worker_rejected_total", worker=0, pid=w["pid"]),
                             [({"worker": "0", "pid": str(w["pid"])}, 1)], text)
            status, body, _ = http_get(sup.admin_port, "/metrics")
            self.assertEqual(series(body.decode(), "dingo_worker_rejected_total", worker=0)[0][1], 1)
            for s in held:
                s.close()
            held = []
            wait_for(lambda: healthz_worker(sup.http_port), 10, what="room again once they are gone")
        finally:
            for s in held:
                s.close()
            sup.cleanup()


class TicketRotationTest(unittest.TestCase):
    def test_rotated_keys_reach_every_worker_and_old_tickets_expire(self):
        sup = Supervisor(workers=2)
        # The harness writes [tls]; add the key to it.
        with open(sup.config) as f:
            text = f.read()
        with open(sup.config, "w") as f:
            f.write(text.replace("[tls]\n", '[tls]\nticket_rotation = "2s"\n'))
        sup.start()
        try:
            ca = os.path.join(certs(), "ca.pem")

            def connect(sess_in=None, sess_out=None):
                args = ["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{sup.tls_port}",
                        "-servername", "localhost", "-CAfile", ca, "-ign_eof"]
                if sess_in:
                    args += ["-sess_in", sess_in]
                if sess_out:
                    args += ["-sess_out", sess_out]
                r = subprocess.run(args, input=b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   capture_output=True, timeout=10)
                return r.stdout.decode(errors="replace")

            def rotations():
                return sup.log().count("rotated TLS session ticket keys")

            sess = os.path.join(sup.dir, "rot.pem")
            self.assertIn("\nNew, ", connect(sess_out=sess))
            # One rotation later the ticket's key is no longer the current one (it is one
            # or two keys back, of three kept, and the ticket lives 2 rotations = 4 s).
            issued = rotations()
            wait_for(lambda: rotations() > issued, 10, what="a key rotation")
            self.assertIn("\nReused, ", connect(sess_in=sess))
            self.assertIn("\nReused, ", connect(sess_in=sess))  # on the other worker too
            # Past the kept keys and the ticket lifetime, the ticket is refused.
            wait_for(lambda: "\nNew, " in connect(sess_in=sess), 20, interval=0.5,
                     what="the old ticket refused")
            # Refused after the rotation it survived above. Not necessarily after a second
            # one: the ticket lives 2 rotations (4 s), but OpenSSL counts a session's age
            # in whole seconds, so its end can come up to a second before the second
            # rotation (CI saw it once).
            self.assertGreaterEqual(rotations(), issued + 1)
        finally:
            sup.cleanup()


class MisbehavingClientsTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=2, gateway_extra='header_timeout = "2s"').start()

    def tearDown(self):
        self.sup.cleanup()

    def test_floods_of_idle_reset_and_half_sent_connections_do_not_stall_the_supervisor(self):
        pid = self.sup.proc.pid
        before = count_fds(pid)
        idle = []
        for i in range(600):
            s = socket.create_connection(("127.0.0.1", self.sup.http_port if i % 2 else self.sup.tls_port), timeout=5)
            if i % 3 == 0:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost")  # never finished
            if i % 3 == 1:
                s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))  # junk TLS
            idle.append(s)
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", self.sup.http_port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        # Meanwhile everyone else is served promptly, and the control plane answers.
        t0 = time.monotonic()
        for _ in range(20):
            healthz_worker(self.sup.http_port)
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(http_get(self.sup.admin_port, "/healthz")[0], 200)
        self.assertEqual(self.sup.ctl("status").returncode, 0)
        # The workers close the idle ones at the header/handshake deadline.
        def all_closed():
            s = self.sup.status()
            w = s["workers"]
            done = sum(x["connections"] for x in w) == 0 and sum(x["timeouts"] for x in w) > 0
            return s if done else None
        st = wait_for(all_closed, 12, what="workers to close idle connections at their deadlines")
        self.assertGreater(sum(w["tls_failures"] for w in st["workers"]), 0)
        for s in idle:
            s.close()
        self.assertIsNone(self.sup.proc.poll())
        # At most as many as before: a watchdog probe may hold one more for a moment,
        # when `before` was counted or now, but nothing of the flood stays.
        wait_for(lambda: count_fds(pid) <= before, 5, what="supervisor fds back")
        self.assertEqual(st["handoff"]["dropped"], 0)


class WorkerDeathTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=2).start()

    def tearDown(self):
        self.sup.cleanup()

    def test_kill_9_of_a_worker_spares_the_others_connections_and_is_replaced_quickly(self):
        # One keep-alive connection on each worker. The hand-off's round-robin alternates;
        # the kernel accept mode picks at random, so connect until both have one (4 tries
        # missed a worker one time in 8; 20 miss one time in half a million).
        conns = {}
        for _ in range(20):
            if len(conns) == 2:
                break
            c = http.client.HTTPConnection("127.0.0.1", self.sup.http_port, timeout=5)
            c.request("GET", "/healthz")
            w = json.loads(c.getresponse().read())["worker"]
            if w in conns:
                c.close()
            else:
                conns[w] = c
        self.assertEqual(set(conns), {0, 1})
        old = self.sup.worker_pids()
        victim = old[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        # The survivor's open keep-alive connection keeps working throughout.
        for _ in range(10):
            conns[1].request("GET", "/healthz")
            self.assertEqual(json.loads(conns[1].getresponse().read())["worker"], 1)

        def replaced():
            for w in self.sup.status()["workers"]:
                if w["id"] == 0 and w["state"] == "ready" and w["pid"] not in (0, victim):
                    return w
        w = wait_for(replaced, 5, interval=0.02, what="a replacement worker")
        # ...and it serves: round-robin brings a new connection to it.
        def served_by_new():
            j = healthz_worker(self.sup.http_port)
            return j["worker"] == 0 and j["pid"] == w["pid"]
        wait_for(served_by_new, 2, interval=0.01, what="the replacement to serve")
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0, f"replacement took {elapsed:.3f}s")
        print(f"\nworker kill -9 to replacement serving: {elapsed * 1000:.0f} ms")
        self.assertEqual(self.sup.status()["workers"][0]["restarts"], 1)
        for c in conns.values():
            c.close()

    def test_hand_off_skips_a_dead_worker_and_drops_nothing(self):
        victim = self.sup.worker_pids()[1]
        os.kill(victim, signal.SIGKILL)
        # Once the victim is a zombie (or gone) its sockets are closed, so hand-offs to
        # it fail and go to the other worker, whether or not the supervisor has reaped it
        # yet. (A socket handed over in the instant between the signal and the kernel
        # closing the victim's files dies with it: no process can take it back.)
        def dead():
            try:
                with open(f"/proc/{victim}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                return True
        wait_for(dead, 5, interval=0.001, what="the victim's exit")
        for _ in range(50):
            healthz_worker(self.sup.http_port)
        self.assertEqual(self.sup.status()["handoff"]["dropped"], 0)


class BurstTest(unittest.TestCase):
    def test_a_burst_bigger_than_the_workers_queues_waits_instead_of_being_dropped(self):
        # One worker: a burst of connections fills its hand-off queue (a few hundred
        # sockets); the rest must wait in the supervisor and the backlog, not be closed.
        sup = Supervisor(workers=1, tls=False).start()
        try:
            socks = []
            for _ in range(3000):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", sup.http_port))
                socks.append(s)
            answered = 0
            for s in socks:
                s.setblocking(True)
                s.settimeout(20)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for s in socks:
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                answered += data.startswith(b"HTTP/1.1 200")
                s.close()
            self.assertEqual(answered, 3000)
            handoff = sup.status()["handoff"]
            self.assertEqual(handoff["dropped"], 0, handoff)
            print(f"\nburst of 3000 on one worker: {handoff['waited']} waited in the supervisor")
        finally:
            sup.cleanup()


class IpHashTest(unittest.TestCase):
    def setUp(self):
        self.sup = Supervisor(workers=4, dispatch="ip-hash", tls=False).start()

    def tearDown(self):
        self.sup.cleanup()

    def test_one_source_address_lands_on_one_worker(self):
        by_source = {}
        for i in range(2, 22):
            src = f"127.0.0.{i}"
            seen = {healthz_worker(self.sup.http_port, source=src)["worker"] for _ in range(5)}
            self.assertEqual(len(seen), 1, f"{src} landed on {seen}")
            by_source[src] = seen.pop()
        self.assertGreater(len(set(by_source.values())), 1, "20 addresses all hashed to one worker")

        # A worker's death moves only its own clients.
        victim_slot = by_source["127.0.0.2"]
        victim = self.sup.worker_pids()[victim_slot]
        self.sup.workers = 4
        os.kill(victim, signal.SIGSTOP)  # stalled, not yet dead: its clients stay put
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: self.sup.status()["workers"][victim_slot]["pid"] != victim, 5)
        self.sup.wait_ready()
        for src, slot in by_source.items():
            self.assertEqual(healthz_worker(self.sup.http_port, source=src)["worker"], slot,
                             f"{src} moved after its worker was replaced")


class CrashLoopTest(unittest.TestCase):
    def test_a_crash_looping_gateway_is_retried_with_backoff_and_never_given_up(self):
        sup = Supervisor(workers=1, tls=False, supervisor_extra='gateway = "/bin/false"\nrestart_backoff = "50ms"\nrestart_backoff_max = "400ms"')
        try:
            t0 = time.monotonic()
            sup.start(wait=False)

            def restarts():
                self.assertIsNone(sup.proc.poll(), "the supervisor gave up")
                return sup.status()["workers"][0]["restarts"]
            # Six exits take at least the five delays between them, 50+100+200+400+400 ms
            # (no backoff would take a few ms); slower is only the machine being busy.
            wait_for(lambda: restarts() >= 6, 30, what="six restarts")
            self.assertGreaterEqual(time.monotonic() - t0, 1.15)
            # Capped at 400 ms, and never given up: it goes on restarting.
            t1, r1 = time.monotonic(), restarts()
            wait_for(lambda: restarts() >= r1 + 3, 30, what="more restarts")
            self.assertGreaterEqual(time.monotonic() - t1, 0.8)  # two whole 400 ms delays at least
            self.assertIn("CRASH LOOP", sup.log())
            # Nobody to take connections: accepted sockets are closed, never leaked.
            with self.assertRaises((ConnectionError, http.client.HTTPException, OSError)):
                http_get(sup.http_port)
            self.assertGreater(sup.status()["handoff"]["dropped"], 0)
        finally:
            sup.cleanup()


def kill_all(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_supervisor(sup):
    """kill -9 of the supervisor alone: its workers live on."""
    sup.proc.kill()
    sup.proc.wait()
    sup.log_file.close()


def successor_of(sup):
    """A second supervisor on the same files as `sup` (not started yet), logging apart."""
    again = Supervisor.__new__(Supervisor)
    again.__dict__.update(sup.__dict__)
    again.log_path = os.path.join(sup.dir, "supervisor2.log")
    return again


def hold_poll(port, channel):
    """A long-poll held by the server (no message after its cursor): the raw socket."""
    status, body, _ = http_get(port, "/v1/poll?channel=" + channel)
    assert status == 200, (status, body)
    cursor = json.loads(body)["cursor"]
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /v1/poll?channel={channel}&cursor={cursor} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def read_to_end(sock, timeout=10):
    """Everything the server sends until it closes (a reset ends it too)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def held_polls(sup):
    return sum(w["held_polls"] for w in sup.status()["workers"])


class StopTest(unittest.TestCase):
    def test_term_drains_and_exits_cleanly(self):
        sup = Supervisor(workers=2, gateway_extra='poll_timeout = "60s"')
        with open(sup.config) as f:
            text = f.read()
        with open(sup.config, "w") as f:  # a drain deadline far from what a drain should take
            f.write(text.replace('drain_timeout = "5s"', 'drain_timeout = "30s"'))
        sup.start()
        try:
            pids = list(sup.worker_pids().values())
            idle = http.client.HTTPConnection("127.0.0.1", sup.http_port, timeout=5)
            idle.request("GET", "/healthz")
            idle.getresponse().read()
            # In flight: a held long-poll and a subscribed WebSocket.
            poll = hold_poll(sup.http_port, "/drain")
            ws = WsClient(sup.http_port)
            self.assertTrue(ws.command("subscribe", channel="/drain")["ok"])
            wait_for(lambda: held_polls(sup) == 1, 10, what="the poll held")
            t0 = time.monotonic()
            sup.proc.send_signal(signal.SIGTERM)
            # The poll is answered now (no messages, a cursor to resume from elsewhere),
            # and its connection closes.
            head, _, body = read_to_end(poll).partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertIn(b"connection: close", head.lower())
            answer = json.loads(body)
            self.assertEqual(answer["messages"], [])
            self.assertTrue(answer["cursor"])
            poll.close()
            # The WebSocket is told to come back later, then closed with 1012.
            m = ws.next_message(timeout=10)
            self.assertEqual(m["event"], "reconnect", m)
            self.assertGreaterEqual(m["after_ms"], 0)
            self.assertEqual(ws.expect_close(timeout=10), 1012)
            ws.close()
            self.assertEqual(sup.proc.wait(timeout=30), 0)
            # Far below the 30 s deadline: nothing waited for it.
            self.assertLess(time.monotonic() - t0, 15, "in-flight requests should not hold the drain")
            self.assertFalse(os.path.exists(sup.pid_file))
            self.assertFalse(os.path.exists(sup.control))
            for pid in pids:
                self.assertFalse(os.path.exists(f"/proc/{pid}/status") and
                                 "zombie" not in open(f"/proc/{pid}/status").read(), f"worker {pid} lingers")
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", sup.http_port), timeout=2)
            r = sup.ctl("status")
            self.assertEqual(r.returncode, 3, r.stderr)
        finally:
            sup.cleanup()

    def test_after_kill_9_of_the_supervisor_workers_serve_their_connections_then_drain_out(self):
        sup = Supervisor(workers=2, tls=False)
        sup.start()
        try:
            pids = list(sup.worker_pids().values())
            conn = http.client.HTTPConnection("127.0.0.1", sup.http_port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            sup.proc.kill()
            sup.proc.wait()
            wait_for(lambda: sup.log().count("the supervisor is gone") == 2, 10,
                     what="both workers to see their supervisor go")
            for _ in range(5):  # the established (idle) keep-alive connection keeps working
                conn.request("GET", "/healthz")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.read()
            conn.close()
            # With their connections closed, the orphaned workers exit.
            def all_gone():
                return all(not os.path.exists(f"/proc/{p}") or "zombie" in open(f"/proc/{p}/status").read().lower()
                           for p in pids)
            wait_for(all_gone, 10, interval=0.2, what="workers to drain out")
        finally:
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sup.cleanup()

    def test_a_new_supervisor_adopts_the_workers_of_one_killed_with_9(self):
        from test_pubsub import publish
        from wsclient import WsClient
        sup = Supervisor(workers=2, tls=False, gateway_extra="client_publish = true\n")
        sup.start()
        pids = sorted(sup.worker_pids().values())
        again = None
        try:
            ws = WsClient(sup.http_port)
            self.assertTrue(ws.command("ping")["ok"])
            # A keep-alive connection on each worker, so that both orphans have one to serve
            # (an orphan without connections leaves at once).
            keepalives = {}
            for _ in range(40):
                c = http.client.HTTPConnection("127.0.0.1", sup.http_port, timeout=5)
                c.request("GET", "/healthz")
                keepalives.setdefault(json.loads(c.getresponse().read())["worker"], c)
                if len(keepalives) == 2:
                    break
            self.assertEqual(len(keepalives), 2)
            keepalive = keepalives[0]
            kill_supervisor(sup)
            wait_for(lambda: sup.log().count("the supervisor is gone") == 2, 10,
                     what="both workers to see their supervisor go")
            # Orphaned: the open WebSocket still answers; pub/sub waits for a hub.
            self.assertTrue(ws.command("ping")["ok"])
            r = ws.command("publish", channel="/adopt", data=1)
            self.assertFalse(r["ok"])
            self.assertEqual(r["error"]["code"], "unavailable")

            # A new supervisor on the same config adopts them instead of starting new ones.
            again = successor_of(sup)
            t0 = time.monotonic()
            again.start()  # waits until both slots are ready
            ready_s = time.monotonic() - t0
            st = again.status()
            self.assertEqual(sorted(w["pid"] for w in st["workers"]), pids, again.log())
            self.assertTrue(all(w["adopted"] and w["state"] == "ready" for w in st["workers"]), st["workers"])
            self.assertEqual(st["adopted_total"], 2)
            self.assertIn("adopted worker", again.log())
            print(f"\nkill -9 of the supervisor -> new one with both old workers adopted: {ready_s * 1000:.0f} ms")

            # Dispatch: new connections reach the adopted workers.
            seen = set()
            for _ in range(30):  # the kernel accept mode's round-robin picks at random
                seen.add(healthz_worker(sup.http_port)["pid"])
                if len(seen) == 2:
                    break
            self.assertEqual(sorted(seen), pids)
            # The WebSocket opened before the kill works again, pub/sub included.
            self.assertTrue(ws.command("subscribe", channel="/adopt")["ok"])
            status, body = publish(sup.http_port, "/adopt", {"n": 1})
            self.assertEqual(status, 200, body)
            m = ws.next_message()
            self.assertEqual((m["event"], m["data"]), ("message", {"n": 1}))
            keepalive.request("GET", "/healthz")
            self.assertEqual(keepalive.getresponse().status, 200)
            ws.close()
            for c in keepalives.values():
                c.close()
            # Status and metrics come from the adopted workers' reports.
            st = wait_for(lambda: (lambda st: st if all(w["accepted"] > 0 for w in st["workers"]) else None)(
                again.status()), 5, what="stats")
            self.assertEqual([w["reattached"] for w in st["workers"]], [1, 1])
            text = again.ctl("metrics").stdout
            self.assertEqual(series(text, "dingo_workers_adopted_total"), [({}, 2)])
            for w in st["workers"]:
                self.assertEqual(series(text, "dingo_worker_reattachments_total", worker=w["id"], pid=w["pid"])[0][1],
                                 1)

            # An adopted worker is not our child: its exit is seen through its pidfd,
            # and its slot gets a new worker.
            os.kill(pids[0], signal.SIGKILL)

            def replaced():
                cur = again.worker_pids()
                return len(cur) == 2 and pids[0] not in cur.values() and \
                    all(w["state"] == "ready" for w in again.status()["workers"])
            wait_for(replaced, 10, what="the killed adopted worker replaced")
            # A clean stop drains the adopted worker too.
            r = again.ctl("stop", "--drain", "2s")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(again.proc.wait(timeout=10), 0, again.log())
            with open(f"/proc/{pids[1]}/status") if os.path.exists(f"/proc/{pids[1]}") else open(os.devnull) as f:
                self.assertNotRegex(f.read(), r"State:\s+[RS]", "the adopted worker outlived the stop")
        finally:
            kill_all(pids)
            (again or sup).cleanup()

    def test_workers_left_by_a_supervisor_with_another_config_are_adopted_to_drain(self):
        sup = Supervisor(workers=1, tls=False)
        sup.start()
        old = list(sup.worker_pids().values())
        again = None
        try:
            conn = http.client.HTTPConnection("127.0.0.1", sup.http_port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            kill_supervisor(sup)
            with open(sup.config, "a") as f:
                f.write("\n# edited while the supervisor was down\n")
            again = successor_of(sup)
            again.start()
            wait_for(lambda: "adopted worker 0" in again.log(), 5, what="the adoption")
            self.assertIn(f"adopted worker 0 (pid {old[0]}, 1 connections) to drain it: it read another configuration",
                          again.log())
            # It drains (its idle keep-alive connection closes at once) and leaves; a new
            # worker, started with the edited file, serves.
            self.assertNotEqual(healthz_worker(sup.http_port)["pid"], old[0])
            wait_for(lambda: old[0] not in [w["pid"] for w in again.status()["workers"]], 10,
                     what="the old worker to drain out")
            self.assertIn("exited (adopted: exit status unknown) (replaced)", again.log())
            conn.close()
        finally:
            kill_all(old)
            (again or sup).cleanup()

    def test_dingoctl_stop(self):
        sup = Supervisor(workers=1, tls=False).start()
        try:
            r = sup.ctl("stop", "--drain", "2s")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(sup.proc.wait(timeout=10), 0)
        finally:
            sup.cleanup()

    def test_quit_stops_now(self):
        sup = Supervisor(workers=2, tls=False, gateway_extra='poll_timeout = "60s"').start()
        try:
            pids = list(sup.worker_pids().values())
            busy = socket.create_connection(("127.0.0.1", sup.http_port), timeout=5)
            busy.sendall(b"GET /healthz HTTP/1.1\r\n")  # a request half sent
            poll = hold_poll(sup.http_port, "/quit")
            ws = WsClient(sup.http_port)
            self.assertTrue(ws.command("subscribe", channel="/quit")["ok"])
            wait_for(lambda: held_polls(sup) == 1 and sum(w["connections"] for w in sup.status()["workers"]) == 3,
                     10, what="the poll held and three connections open")
            sup.proc.send_signal(signal.SIGQUIT)
            self.assertEqual(sup.proc.wait(timeout=10), 0)
            # Cut, not answered: no response, no reconnect hint, no close frame.
            self.assertEqual(read_to_end(poll), b"")
            self.assertEqual(read_to_end(busy), b"")
            self.assertEqual(ws.buf + read_to_end(ws.sock), b"")
            for pid in pids:
                self.assertFalse(os.path.exists(f"/proc/{pid}") and
                                 "zombie" not in open(f"/proc/{pid}/status").read(), f"worker {pid} lingers")
            for s in (busy, poll, ws.sock):
                s.close()
        finally:
            sup.cleanup()

    def test_second_supervisor_on_the_same_control_socket_refuses_to_start(self):
        sup = Supervisor(workers=1, tls=False).start()
        try:
            r = subprocess.run([binary("dingo-supervisor"),
                                "--config", sup.config], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 1)
            self.assertIn("another supervisor is running", r.stderr + r.stdout)
            self.assertEqual(sup.ctl("status").returncode, 0)
        finally:
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
