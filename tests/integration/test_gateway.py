"""dingo-gateway on its own (--standalone): HTTP/1.1, limits, deadlines, TLS."""
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import binary, certs, free_port, healthz_worker, http_get, terminate, wait_for


class Standalone:
    def __init__(self, config_text="", tls=False):
        self.dir = tempfile.mkdtemp(prefix="dingo-gw-")
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        c = certs()
        if tls:
            config_text += f'\n[tls]\ncert = "{c}/cert.pem"\nkey = "{c}/key.pem"\n'
        self.config = os.path.join(self.dir, "dingo.toml")
        with open(self.config, "w") as f:
            f.write(config_text)
        args = [binary("dingo-gateway"), "--standalone", "--config", self.config,
                "--listen", f"127.0.0.1:{self.port}"]
        if tls:
            args += ["--listen-tls", f"127.0.0.1:{self.tls_port}"]
        self.log = open(os.path.join(self.dir, "gateway.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: healthz_worker(self.port), 10, what="standalone gateway")

    def stop(self):
        terminate(self.proc)
        self.log.close()


class StandaloneGatewayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = Standalone('[gateway]\nheader_timeout = "1s"\nidle_timeout = "1s"\nmax_body_bytes = 1024\n', tls=True)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()

    def test_healthz(self):
        j = healthz_worker(self.gw.port)
        self.assertEqual(j["status"], "ok")
        self.assertEqual(j["pid"], self.gw.proc.pid)
        self.assertEqual(j["worker"], 0)

    def test_head_has_no_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
        conn.request("HEAD", "/healthz")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), b"")
        conn.close()

    def test_wrong_method_is_405_json(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
        conn.request("DELETE", "/healthz")
        r = conn.getresponse()
        self.assertEqual(r.status, 405)
        self.assertEqual(r.getheader("Allow"), "GET, HEAD")
        self.assertEqual(json.loads(r.read())["error"]["code"], "bad_request")
        conn.close()

    def test_browser_client_and_demo_are_served_with_etags(self):
        source = os.environ.get("DINGO_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
        for path, file, ctype in (("/v1/client.js", "clients/js/dingo.js", "text/javascript; charset=utf-8"),
                                  ("/demo/chat.html", "clients/demo/chat.html", "text/html; charset=utf-8")):
            status, body, headers = http_get(self.gw.port, path)
            self.assertEqual(status, 200)
            with open(os.path.join(source, file), "rb") as f:
                self.assertEqual(body, f.read())  # the file as built in
            self.assertEqual(headers["Content-Type"], ctype)
            self.assertEqual(headers["Cache-Control"], "public, max-age=300")
            etag = headers["ETag"]
            self.assertRegex(etag, r'^"[0-9a-f]{20}"$')
            # Revalidation: the same tag (also weak, or in a list) is 304 without a body.
            for inm in (etag, "W/" + etag, f'"x", {etag}', "*"):
                conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
                conn.request("GET", path, headers={"If-None-Match": inm})
                r = conn.getresponse()
                self.assertEqual((r.status, r.read(), r.getheader("ETag"), r.getheader("Content-Length")),
                                 (304, b"", etag, None), inm)
                conn.close()
            self.assertEqual(http_get(self.gw.port, path, headers={"If-None-Match": '"other"'})[0], 200)
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=5)
        conn.request("POST", "/v1/client.js", body=b"{}")
        r = conn.getresponse()
        self.assertEqual((r.status, r.getheader("Allow")), (405, "GET, HEAD"))
        self.assertEqual(json.loads(r.read())["error"]["code"], "bad_request")
        conn.close()

    def test_pipelined_requests_are_answered_in_order(self):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3 +
                      b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(data.count(b"HTTP/1.1 404"), 1)
        self.assertLess(data.index(b"200 OK"), data.index(b"404"))

    def test_body_over_the_limit_is_413(self):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000)
            data = s.recv(4096)
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data)
        self.assertIn(b'"too_large"', data)

    def test_idle_keep_alive_is_closed_at_the_idle_deadline(self):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200 OK", s.recv(4096))
            t0 = time.monotonic()
            self.assertEqual(s.recv(1), b"")
            self.assertGreater(time.monotonic() - t0, 0.8)
            self.assertLess(time.monotonic() - t0, 4)

    def test_tls_handshake_deadline(self):
        # A peer that connects to the TLS port and never sends its ClientHello (or stops
        # half way through it) is closed at handshake_timeout, not before, and not at the
        # header or idle deadlines (set far away here); a good client is served meanwhile.
        deadline = 2.0
        gw = Standalone(f'[gateway]\nhandshake_timeout = "{deadline:g}s"\nheader_timeout = "60s"\n'
                        'idle_timeout = "60s"\n', tls=True)
        try:
            silent = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=30)
            partial = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=30)
            t0 = time.monotonic()
            partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's first bytes
            ctx = ssl.create_default_context(cafile=os.path.join(certs(), "ca.pem"))
            with socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    t.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    self.assertIn(b"200 OK", t.recv(4096))
                    self.assertEqual(t.version(), "TLSv1.3")
            for s in (silent, partial):
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                elapsed = time.monotonic() - t0
                # No answer (a failed handshake may end with a TLS alert record, never
                # with anything else), and the connection ends.
                self.assertTrue(data == b"" or data.startswith(b"\x15\x03"), data)
                if data:
                    self.assertEqual(s.recv(4096), b"")
                # Not before the deadline, and well before the 10 s default (so a setting
                # that is ignored fails) and the 60 s header and idle deadlines. The margin
                # is for a busy machine; the gateway checks deadlines every 250 ms.
                self.assertGreaterEqual(elapsed, deadline - 0.05)
                self.assertLess(elapsed, deadline + 6)
                s.close()
        finally:
            gw.stop()

    def test_tls_alpn_offers_only_http11(self):
        ctx = ssl.create_default_context(cafile=os.path.join(certs(), "ca.pem"))
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", self.gw.tls_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                self.assertIsNone(t.selected_alpn_protocol())  # no h2: no ALPN, not a failure

    def test_two_standalone_gateways_share_a_port(self):
        # SO_REUSEPORT: a second standalone process on the same port starts and serves.
        second = subprocess.Popen([binary("dingo-gateway"), "--standalone", "--config", self.gw.config,
                                   "--listen", f"127.0.0.1:{self.gw.port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pids = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(
                {healthz_worker(self.gw.port)["pid"] for _ in range(40)}), 10, what="both processes")
            self.assertEqual(pids, {self.gw.proc.pid, second.pid})
        finally:
            second.terminate()
            second.wait(timeout=10)


class StandaloneFdExhaustionTest(unittest.TestCase):
    def test_out_of_fds_the_listener_pauses_instead_of_spinning(self):
        import resource
        port = free_port()
        d = tempfile.mkdtemp(prefix="dingo-gw-")
        log_path = os.path.join(d, "gateway.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [binary("dingo-gateway"), "--standalone", "--listen", f"127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
        socks = []
        try:
            wait_for(lambda: healthz_worker(port), 10, what="standalone gateway")
            for _ in range(80):  # more than it has fds: the rest wait in the backlog
                socks.append(socket.create_connection(("127.0.0.1", port)))
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu():
                with open(f"/proc/{proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks
            before = cpu()
            time.sleep(2)  # what is measured: how busy it is while it cannot accept
            busy = cpu() - before
            self.assertLess(busy, 1.0, f"{busy:.2f} s of CPU in 2 s: the accept loop spins")
            with open(log_path) as f:
                accept_lines = [l for l in f if "accept:" in l]
            self.assertLess(len(accept_lines), 60, "one log line per failed accept")
            for s in socks:
                s.close()
            socks.clear()
            wait_for(lambda: healthz_worker(port), 10, what="serving again once fds are free")
        finally:
            for s in socks:
                s.close()
            terminate(proc)


class StandaloneStartupTest(unittest.TestCase):
    def test_worker_mode_needs_a_supervisor(self):
        r = subprocess.run([binary("dingo-gateway")], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--standalone", r.stderr)

    def test_port_in_use_is_exit_1(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            r = subprocess.run([binary("dingo-gateway"), "--standalone", "--listen", f"127.0.0.1:{port}"],
                               capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"127.0.0.1:{port}", r.stderr)

    def test_term_drains(self):
        gw = Standalone('[gateway]\npoll_timeout = "60s"\n')
        try:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            # In flight: a long-poll the gateway holds (nothing after its cursor) and a
            # request whose body is still coming.
            # Each connection is served once first, so the gateway surely holds it.
            held = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
            held.request("GET", "/v1/poll?channel=/t")
            cursor = json.loads(held.getresponse().read())["cursor"]
            held.request("GET", f"/v1/poll?channel=/t&cursor={cursor}")
            slow = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b"}"):
                first += slow.recv(4096)
            slow.sendall(b"POST /v1/publish/t HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\"")
            gw.proc.send_signal(signal.SIGTERM)
            # The held poll is answered at once, with no message and a cursor to resume.
            r = held.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Connection"), "close")
            answer = json.loads(r.read())
            self.assertEqual(answer["messages"], [])
            self.assertTrue(answer["cursor"])
            # The request still arriving is finished and answered.
            slow.sendall(b":1}")
            data = b""
            while True:
                chunk = slow.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
            self.assertIn(b"connection: close", data.lower())
            self.assertEqual(gw.proc.wait(timeout=20), 0)
        finally:
            gw.stop()


if __name__ == "__main__":
    unittest.main()
