"""HTTP/1.1 framing (RFC 9112), WebSocket handshake and frame limits, TLS alerts and the
admin listener's answer to garbage, over raw sockets: these tests send exactly the bytes
an attacker or an odd client would, which no HTTP library lets through."""
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import unittest
import uuid

from harness import Supervisor
from test_gateway import Standalone
from wsclient import CONT, TEXT, WsClient


def read_until_closed(sock, timeout=5):
    """Every byte the server sends until it closes (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_response(sock, timeout=5):
    """One response (head and Content-Length body) from a socket: (status, head, body, rest)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a response: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    status = int(head.split(b" ")[1])
    return status, head.decode(errors="replace"), rest[:length], rest[length:]


class HttpFramingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = Standalone('[gateway]\nheader_timeout = "2s"\nidle_timeout = "2s"\n', tls=True)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)

    def exchange(self, raw, timeout=3):
        """Sends `raw`, returns (every byte answered, closed by the server)."""
        with self.connect() as s:
            s.sendall(raw)
            return read_until_closed(s, timeout)

    def history(self, channel):
        with self.connect() as s:
            s.sendall(f"GET /v1/history{channel} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            status, _, body, _ = read_response(s)
        self.assertEqual(status, 200, body)
        return json.loads(body)["messages"]

    def assert_rejected(self, raw, status, closed=True):
        data, was_closed = self.exchange(raw)
        self.assertTrue(data.startswith(f"HTTP/1.1 {status} ".encode()), data)
        # One answer only: nothing in the request was taken for a second request.
        self.assertEqual(len(re.findall(rb"HTTP/1\.1 \d{3} ", data)), 1, data)
        if closed:
            self.assertTrue(was_closed, "the connection must close after the answer")
        body = data.split(b"\r\n\r\n", 1)[1]
        self.assertIn("error", json.loads(body))
        return data

    def test_smuggled_post_after_chunked_identity_is_not_run(self):
        # "chunked, identity": the final coding is not chunked, so a proxy in front may
        # delimit the body otherwise. Taking the body for a second request runs a publish
        # nobody sent on its own (it ran before: the channel got a message).
        channel = f"/smuggle/{uuid.uuid4().hex}"
        smuggled = (f"POST /v1/publish{channel} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: 7\r\n\r\n\"owned\"").encode()
        raw = (b"POST /v1/publish/smuggle/cover HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked, identity\r\nContent-Type: application/json\r\n\r\n" + smuggled)
        data = self.assert_rejected(raw, 400)
        self.assertIn(b"chunked", data)
        self.assertEqual(self.history(channel), [])

    def test_transfer_encoding_rules(self):
        head = b"POST /v1/publish/te HTTP/1.1\r\nHost: x\r\n"
        body = b"1\r\n1\r\n0\r\n\r\n"
        self.assert_rejected(head + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + body, 501)
        self.assert_rejected(head + b"Transfer-Encoding: chunked\r\nContent-Length: 11\r\n\r\n" + body, 400)
        self.assert_rejected(head + b"Content-Length: 11\r\nTransfer-Encoding: chunked\r\n\r\n" + body, 400)
        self.assert_rejected(head + b"Transfer-Encoding: chunked, chunked\r\n\r\n" + body, 400)
        self.assert_rejected(b"POST /v1/publish/te HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + body, 400)
        # Chunked alone still works.
        data, _ = self.exchange(head + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)

    def test_duplicate_or_listed_content_length_is_400(self):
        head = b"POST /v1/publish/cl HTTP/1.1\r\nHost: x\r\n"
        self.assert_rejected(head + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n1", 400)
        self.assert_rejected(head + b"Content-Length: 1, 1\r\n\r\n1", 400)
        self.assert_rejected(head + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n12", 400)

    def test_host_is_required_once(self):
        self.assert_rejected(b"GET /healthz HTTP/1.1\r\n\r\n", 400, closed=False)
        self.assert_rejected(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, closed=False)
        self.assert_rejected(b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400, closed=False)
        # HTTP/1.0 needs none.
        data, _ = self.exchange(b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)

    def test_a_bad_host_keeps_a_body_less_connection_usable(self):
        with self.connect() as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, _, rest = read_response(s)
            self.assertEqual(status, 400)
            data, closed = read_until_closed(s)
            self.assertTrue((rest + data).startswith(b"HTTP/1.1 200 "), rest + data)

    def test_expect_100_continue_is_answered_before_the_body(self):
        channel = f"/expect/{uuid.uuid4().hex}"
        with self.connect() as s:
            s.sendall((f"POST /v1/publish{channel} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n").encode())
            s.settimeout(0.5)  # curl waits 1 s for it; it must come well before
            t0 = time.monotonic()
            interim = s.recv(4096)
            self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
            self.assertLess(time.monotonic() - t0, 0.5)
            s.sendall(b"[1,2]")
            status, _, body, _ = read_response(s)
            self.assertEqual(status, 200, body)
        self.assertEqual(len(self.history(channel)), 1)

    def test_curl_publish_with_expect_does_not_stall(self):
        # curl waits up to 1 s for the 100 before it sends the body anyway: every publish
        # with Expect took 1 s before.
        if not shutil.which("curl"):
            self.skipTest("no curl")
        t0 = time.monotonic()
        r = subprocess.run(["curl", "-s", "-H", "Expect: 100-continue", "-H", "Content-Type: application/json",
                            "--data-binary", json.dumps("x" * 3000), "-w", "\n%{http_code}",
                            f"http://127.0.0.1:{self.gw.port}/v1/publish/curl"],
                           capture_output=True, text=True, timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.stdout.rsplit("\n", 1)[1], "200", r.stdout)
        self.assertLess(elapsed, 0.5)

    def test_other_expectations_are_417(self):
        self.assert_rejected(b"POST /v1/publish/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                             b"Expect: 200-ok\r\n\r\n1", 417)

    def test_leading_empty_lines_are_ignored(self):
        data, _ = self.exchange(b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        # A POST body followed by a stray CRLF (old browsers) keeps the connection usable.
        with self.connect() as s:
            s.sendall(b"POST /v1/publish/crlf HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, _, rest = read_response(s)
            self.assertEqual(status, 200)
            data, _ = read_until_closed(s)
            self.assertTrue((rest + data).startswith(b"HTTP/1.1 200 "), rest + data)
        # Not an endless stream of them.
        self.assert_rejected(b"\r\n" * 1000 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_absolute_form_target(self):
        data, _ = self.exchange(b"GET http://gw.example:8080/healthz HTTP/1.1\r\nHost: other\r\n"
                                b"Connection: close\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)
        self.assertEqual(json.loads(data.split(b"\r\n\r\n", 1)[1])["status"], "ok")
        self.assert_rejected(b"GET http://user@gw/healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 400, closed=False)
        self.assert_rejected(b"GET healthz HTTP/1.1\r\nHost: gw\r\n\r\n", 400, closed=False)

    def test_unknown_method_is_501_known_is_405(self):
        for method in (b"FOO", b"PROPFIND", b"get"):
            self.assert_rejected(method + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 501, closed=False)
        data = self.assert_rejected(b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, closed=False)
        self.assertIn(b"Allow: GET, HEAD", data)

    def test_http10_sse_is_not_chunked(self):
        with self.connect() as s:
            s.sendall(b"GET /v1/sse?channel=/sse10 HTTP/1.0\r\n\r\n")
            s.settimeout(5)
            data = b""
            while b"event: state" not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        self.assertIn(b"200 OK", head)
        self.assertNotIn(b"chunked", head.lower())
        self.assertIn(b"Connection: close", head)
        self.assertTrue(body.startswith(b"retry: "), body)


class WebSocketHandshakeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = Standalone("")

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()

    def upgrade(self, key_lines, version=b"HTTP/1.1"):
        raw = (b"GET /v1/ws " + version + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
               b"".join(b"Sec-WebSocket-Key: " + k + b"\r\n" for k in key_lines) +
               b"Sec-WebSocket-Version: 13\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            s.sendall(raw)
            status, _, _, _ = read_response(s)
            return status

    def test_good_key_is_101(self):
        self.assertEqual(self.upgrade([b"dGhlIHNhbXBsZSBub25jZQ=="]), 101)

    def test_bad_keys_are_400(self):
        for keys in ([b"!!!!!!!!!!!!!!!!!!!!!!=="],            # not base64
                     [b"dGhlIHNhbXBsZSBub25jZQ"],              # no padding (22 chars)
                     [b"AAAAAAAAAAAAAAAAAAAAAAA="],            # decodes to 17 bytes
                     [b"dGhlIHNhbXBsZSBub25j"],                # 15 bytes
                     [b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZSBub25jZQ=="]):  # twice
            self.assertEqual(self.upgrade(keys), 400, keys)

    def test_http10_upgrade_is_400(self):
        self.assertEqual(self.upgrade([b"dGhlIHNhbXBsZSBub25jZQ=="], version=b"HTTP/1.0"), 400)

    def test_endless_empty_continuation_frames_are_cut(self):
        c = WsClient(self.gw.port)
        try:
            c.send_frame(TEXT, b"", fin=False)
            frame = bytes([CONT, 0x80]) + b"\x00\x00\x00\x00"  # empty, masked, not final
            sent = 0
            code = None
            try:
                for _ in range(200):  # up to 1.2 MB of frames: the server gives up long before
                    c.sock.sendall(frame * 1000)
                    sent += 1000
            except OSError:
                pass  # it closed on us while we were still sending
            try:
                code = c.expect_close(timeout=5)
            except OSError:
                pass
            self.assertIn(code, (1008, 1009), f"after {sent} empty fragments")
        finally:
            c.sock.close()


class TlsAlertTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gw = Standalone("", tls=True)

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()

    def test_garbage_client_hello_gets_an_alert(self):
        # A handshake record whose body is not a ClientHello: OpenSSL fails the handshake
        # and writes a fatal alert, which must reach the peer before the close.
        record = b"\x16\x03\x01\x00\x08" + b"\x01\x00\x00\x04" + b"\xff\xff\xff\xff"
        with socket.create_connection(("127.0.0.1", self.gw.tls_port), timeout=5) as s:
            s.sendall(record)
            data, _ = read_until_closed(s, 5)
        self.assertTrue(data, "closed with no alert")
        self.assertEqual(data[0], 0x15, data)  # content type: alert
        self.assertEqual(data[5], 2, data)     # level: fatal

    def test_old_protocol_version_gets_protocol_version_alert(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError) as e:
            self.skipTest(f"this OpenSSL cannot offer TLS 1.1: {e}")
        with socket.create_connection(("127.0.0.1", self.gw.tls_port), timeout=5) as raw:
            with self.assertRaises(ssl.SSLError) as caught:
                with ctx.wrap_socket(raw, server_hostname="localhost"):
                    pass
        if "NO_PROTOCOLS_AVAILABLE" in str(caught.exception).upper():
            self.skipTest("this OpenSSL refuses to send a TLS 1.1 ClientHello")
        self.assertIn("ALERT_PROTOCOL_VERSION", str(caught.exception).upper())


class AdminListenerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sup = Supervisor(workers=1, tls=False).start()

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def test_malformed_request_gets_400_json_then_close(self):
        for raw in (b"HELLO WORLD\r\n\r\n", b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", self.sup.admin_port), timeout=5) as s:
                s.sendall(raw)
                data, closed = read_until_closed(s, 5)
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), (raw, data))
            self.assertTrue(closed, raw)
            head, body = data.split(b"\r\n\r\n", 1)
            self.assertIn(b"application/json", head)
            self.assertEqual(json.loads(body)["error"]["code"], "bad_request")

    def test_good_requests_still_served(self):
        with socket.create_connection(("127.0.0.1", self.sup.admin_port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, _ = read_until_closed(s, 5)
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data)


if __name__ == "__main__":
    unittest.main()
