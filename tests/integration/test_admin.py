"""The supervisor's admin listener beyond /metrics and /healthz: the status document at
/v1/status, its SSE stream /v1/status/stream (one event a second, bounded in number, a
reader that stops reading is cut), the dashboard page at /, and nothing but GET and HEAD."""
import http.client
import json
import socket
import time
import unittest

from harness import Supervisor, http_get, wait_for

MAX_STREAMS = 16  # AdminServer::kMaxStreams


def shape(v):
    """A JSON value's shape: dicts by their keys, lists by their items' shapes, numbers as
    one type (null too: last_probe_ms is null until a first probe)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    if v is None or isinstance(v, (int, float)) and not isinstance(v, bool):
        return "number"
    return type(v).__name__


def open_stream(port, rcvbuf=None):
    """A raw GET /v1/status/stream; returns the socket, the response head and what was read past it."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /v1/status/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    if rcvbuf:
        return s, None, b""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return s, head.decode(), rest


class AdminTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sup = Supervisor(workers=2, tls=False).start()
        cls.port = cls.sup.admin_port

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def setUp(self):
        # Each test starts with no status stream open (one test's streams end with it).
        wait_for(lambda: self.sup.status()["admin"]["streams"] == 0, 10, what="no stream open")

    def test_v1_status_is_the_dingoctl_status_document(self):
        status, body, headers = http_get(self.port, "/v1/status")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        mine = json.loads(body)
        theirs = self.sup.status()
        self.assertEqual(shape(mine), shape(theirs))
        self.assertEqual(mine["pid"], theirs["pid"])
        self.assertEqual([(w["id"], w["pid"]) for w in mine["workers"]],
                         [(w["id"], w["pid"]) for w in theirs["workers"]])
        self.assertEqual(len(mine["workers"]), 2)
        self.assertIn("top_channels", mine["hub"])
        self.assertIn("admin", mine)

    def test_stream_sends_a_status_event_at_once_then_every_second(self):
        s, head, buf = open_stream(self.port)
        try:
            self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            self.assertIn("Content-Type: text/event-stream", head)
            start = time.monotonic()
            arrivals, events = [], []
            while len(events) < 4 and time.monotonic() - start < 8:
                while b"\n\n" in buf:
                    block, _, buf = buf.partition(b"\n\n")
                    fields = dict(line.split(": ", 1) for line in block.decode().split("\n") if ": " in line)
                    if fields.get("event") == "status":
                        arrivals.append(time.monotonic() - start)
                        events.append(json.loads(fields["data"]))
                if len(events) < 4:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        finally:
            s.close()
        self.assertEqual(len(events), 4, arrivals)
        self.assertLess(arrivals[0], 0.5, "the first event comes at once")
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        for g in gaps:
            self.assertGreater(g, 0.7, arrivals)
            self.assertLess(g, 1.5, arrivals)
        for e in events:
            self.assertEqual(len(e["workers"]), 2)
            self.assertEqual(e["pid"], self.sup.proc.pid)
        self.assertGreater(events[-1]["uptime_s"], events[0]["uptime_s"] + 2)

    def test_a_reader_that_stops_reading_is_cut(self):
        cut_before = self.sup.status()["admin"]["streams_cut"]
        s, _, _ = open_stream(self.port, rcvbuf=4096)  # and never read
        try:
            wait_for(lambda: self.sup.status()["admin"]["streams"] == 1, 5, what="the stream open")
            started = time.monotonic()
            wait_for(lambda: self.sup.status()["admin"]["streams"] == 0, 60, what="the stalled stream cut")
            took = time.monotonic() - started
            self.assertEqual(self.sup.status()["admin"]["streams_cut"], cut_before + 1)
            self.assertIn("status stream cut", self.sup.log())
            # What the kernel still held is delivered, then the end: the connection is closed.
            s.settimeout(10)
            while s.recv(65536):
                pass
            print(f"stalled status stream cut after {took:.1f} s")
        finally:
            s.close()
        # A reader that reads is never cut.
        s2, head, _ = open_stream(self.port)
        s2.close()
        self.assertIn("200", head.split("\r\n")[0])

    def test_streams_past_the_limit_are_refused_with_503(self):
        streams = []
        try:
            for _ in range(MAX_STREAMS):
                s, head, _ = open_stream(self.port)
                self.assertTrue(head.startswith("HTTP/1.1 200"), head)
                streams.append(s)
            s, head, rest = open_stream(self.port)
            streams.append(s)
            self.assertTrue(head.startswith("HTTP/1.1 503"), head)
            self.assertIn("Content-Type: application/json", head)
            self.assertIn("Retry-After: ", head)
            length = int(head.split("Content-Length: ")[1].split("\r\n")[0])
            while len(rest) < length:
                rest += s.recv(4096)
            self.assertEqual(json.loads(rest)["error"]["code"], "too_many_streams")
            streams.pop().close()
            self.assertGreaterEqual(self.sup.status()["admin"]["streams_refused"], 1)
            # One gone: a new one is served.
            streams.pop().close()
            wait_for(lambda: self.sup.status()["admin"]["streams"] == MAX_STREAMS - 1, 5, what="a stream closed")
            s, head, _ = open_stream(self.port)
            streams.append(s)
            self.assertTrue(head.startswith("HTTP/1.1 200"), head)
        finally:
            for s in streams:
                s.close()

    def test_only_get_and_head(self):
        for method, path in [("POST", "/"), ("PUT", "/v1/status"), ("DELETE", "/v1/status/stream"),
                             ("POST", "/metrics"), ("PATCH", "/dashboard.js")]:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request(method, path, body=b"{}")
            r = conn.getresponse()
            body = r.read()
            conn.close()
            self.assertEqual(r.status, 405, (method, path))
            self.assertEqual(r.getheader("Allow"), "GET, HEAD")
            self.assertEqual(json.loads(body)["error"]["code"], "method_not_allowed")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("HEAD", "/")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), b"")
        conn.close()

    def test_the_dashboard_page_and_its_files(self):
        status, body, headers = http_get(self.port, "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        policy = headers["Content-Security-Policy"]
        self.assertIn("default-src 'none'", policy)
        self.assertNotIn("unsafe-inline", policy)
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        page = body.decode()
        self.assertNotIn("http://", page.replace("http://www.w3.org", ""))  # nothing from elsewhere
        for path, ctype in [("/dashboard.js", "text/javascript; charset=utf-8"),
                            ("/dashboard.css", "text/css; charset=utf-8")]:
            self.assertIn(f'"{path}"', page)
            status, body, headers = http_get(self.port, path)
            self.assertEqual((status, headers["Content-Type"]), (200, ctype))
            self.assertNotIn("innerHTML", body.decode())
        self.assertEqual(http_get(self.port, "/index.html")[0], 404)
        self.assertEqual(http_get(self.port, "/v1/status?x=1")[0], 200)  # a query is ignored

    def test_malformed_requests_still_get_400(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost x\r\n\r\n")
            reply = s.recv(4096).decode()
        self.assertTrue(reply.startswith("HTTP/1.1 400"), reply)


if __name__ == "__main__":
    unittest.main()
