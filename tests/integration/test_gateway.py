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
        # Connect to the TLS port and say nothing: closed at the handshake deadline (10s
        # default is too long for a test, so only check that a byte-less peer is not
        # answered and that a good client is served meanwhile).
        with socket.create_connection(("127.0.0.1", self.gw.tls_port), timeout=5):
            ctx = ssl.create_default_context(cafile=os.path.join(certs(), "ca.pem"))
            with socket.create_connection(("127.0.0.1", self.gw.tls_port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    t.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    self.assertIn(b"200 OK", t.recv(4096))
                    self.assertEqual(t.version(), "TLSv1.3")

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
        gw = Standalone()
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        gw.proc.send_signal(signal.SIGTERM)
        self.assertEqual(gw.proc.wait(timeout=5), 0)
        gw.stop()


if __name__ == "__main__":
    unittest.main()
