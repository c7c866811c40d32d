"""Hostile input against the real binaries: each test reproduces one way the product
broke before it was hardened (issue "Hardening", defects 1-5 and 9), and checks that
it now answers with an error and loses nothing."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from harness import SANITIZED, Supervisor, count_fds, wait_for
from test_polling import poll
from test_pubsub import publish, rss_kb
from wsclient import WsClient, wait_closed


def control_request(path, payload, timeout=10):
    """Sends raw bytes on the control socket; returns the parsed reply line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        try:
            s.sendall(payload)
        except BrokenPipeError:
            pass  # answered and closed before it read everything: the answer is queued
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data)
    finally:
        s.close()


def deep_json(depth):
    return "[" * depth + "]" * depth


class ControlSocketTest(unittest.TestCase):
    BAD_LINES = [
        b'{"cmd":"adopt","pid":"x"}\n',
        b'{"cmd":"adopt","pid":1.5,"worker":"0"}\n',
        b'{"cmd":"adopt","pid":99999999999999999999,"worker":0}\n',
        b'{"cmd":"adopt","pid":1,"worker":0,"config_digest":7,"generation":"g","connections":-1}\n',
        b'{"cmd":"stop","drain_ms":"soon"}\n',
        b'{"cmd":"stop","drain_ms":-5}\n',
        b'{"cmd":"drain-worker","id":"1"}\n',
        b'{"cmd":"drain-worker"}\n',
        b'{"cmd":7}\n',
        b'{"cmd":"\xff\xfe"}\n',
        b'{"cmd":"frobnicate\\u0000"}\n',
        b'["status"]\n',
        b'not json at all\n',
        b'\xc3\x28\n',
        b'\n',
        (deep_json(100000) + "\n").encode(),
        ('{"cmd":"status","x":' + deep_json(5000) + "}\n").encode(),
    ]

    def test_any_line_gets_an_error_reply_and_the_supervisor_lives(self):
        sup = Supervisor(workers=1, tls=False).start()
        try:
            pid = sup.proc.pid
            for line in self.BAD_LINES:
                reply = control_request(sup.control, line)
                self.assertIs(reply["ok"], False, (line[:60], reply))
                self.assertIsInstance(reply["error"], str)
                self.assertIsNone(sup.proc.poll(), f"the supervisor died on {line[:60]!r}")
            # A line of megabytes, without a newline in the first 64 KiB.
            reply = control_request(sup.control, b"x" * (3 << 20) + b"\n")
            self.assertIs(reply["ok"], False)
            self.assertIn("at most", reply["error"])
            self.assertIsNone(sup.proc.poll())
            # Still itself: answers status, with the same pid.
            self.assertEqual(sup.status()["pid"], pid)
        finally:
            sup.cleanup()

    def test_callers_outside_root_our_user_and_the_group_are_refused(self):
        sup = Supervisor(workers=1, tls=False).start()
        try:
            # Open the way on purpose (folder and socket mode): the peer check must hold alone.
            os.chmod(sup.dir, 0o755)
            os.chmod(sup.control, 0o666)
            script = ("import socket,sys\n"
                      "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                      "try: s.sendall(b'{\"cmd\":\"stop\"}\\n')\n"
                      "except BrokenPipeError: pass\n"
                      "print(s.recv(4096).decode())")
            out = subprocess.run(["/usr/bin/python3", "-c", script, sup.control], user=65534, group=65534,
                                 extra_groups=[], capture_output=True, text=True, timeout=10)
            reply = json.loads(out.stdout)
            self.assertIs(reply["ok"], False, out)
            self.assertIn("permission denied", reply["error"])
            self.assertIsNone(sup.proc.poll(), "a refused caller stopped the supervisor")
            self.assertTrue(sup.status()["pid"])
        finally:
            sup.cleanup()

    def test_a_corrupt_workers_file_does_not_stop_the_start(self):
        sup = Supervisor(workers=1, tls=False)
        try:
            workers_file = sup.pid_file[:-4] + ".workers"
            for text in ['{"supervisor":1,"generation":"x","workers":[{"slot":"0","pid":"1"},7,null]}',
                         '{"workers":' + deep_json(100000) + "}",
                         '\xff\xfe garbage']:
                with open(workers_file, "w", encoding="latin-1") as f:
                    f.write(text)
                sup.start()
                self.assertEqual(len(sup.worker_pids()), 1)
                sup.stop()
        finally:
            sup.cleanup()


class DeepJsonTest(unittest.TestCase):
    def test_a_deeply_nested_publish_gets_400_and_the_worker_lives(self):
        sup = Supervisor(workers=1, tls=False,
                         gateway_extra="max_message_size = \"16MiB\"\nmax_body_bytes = \"16MiB\"\nclient_publish = true\n").start()
        try:
            pid = sup.worker_pids()[0]
            status, body = publish(sup.http_port, "/deep", None, raw=deep_json(100000))
            self.assertEqual(status, 400)
            self.assertEqual(body["error"]["code"], "bad_request")
            self.assertIn("deep", body["error"]["message"])
            # Over WebSocket, with max_message_size raised.
            c = WsClient(sup.http_port)
            c.send_text('{"id":1,"op":"publish","channel":"/deep","data":' + deep_json(100000) + "}")
            r = c.recv_json()
            self.assertEqual(r["error"]["code"], "bad_request")
            self.assertTrue(c.command("ping")["ok"])
            # Nesting within the limit is fine.
            status, _ = publish(sup.http_port, "/deep", None, raw=deep_json(60))
            self.assertEqual(status, 200)
            self.assertEqual(list(sup.worker_pids().values()), [pid], "the worker restarted")
        finally:
            sup.cleanup()


class ManyChannelsTest(unittest.TestCase):
    def test_a_poll_over_300_channels_resumes_every_one_exactly(self):
        sup = Supervisor(workers=2, tls=False,
                         gateway_extra='max_channels = 300\nmax_header_bytes = "64KiB"\n').start()
        try:
            port = sup.http_port
            channels = [f"/many/{i}" for i in range(300)]
            status, first = poll(port, channels)
            self.assertEqual(status, 200, first)
            publish(port, "/many/299", "last")
            publish(port, "/many/0", "first")
            # Round-robin: the two polls reach both workers; neither may lose a channel.
            got = []
            cursor = first["cursor"]
            for _ in range(2):
                status, r = poll(port, channels, cursor)
                self.assertEqual(status, 200, r)
                self.assertTrue(r["recovered"])
                got += [(m["channel"], m["data"]) for m in r["messages"]]
                cursor = r["cursor"]
                if len(got) == 2:
                    break
            self.assertEqual(sorted(got), [("/many/0", "first"), ("/many/299", "last")])
        finally:
            sup.cleanup()

    def test_more_channels_than_a_request_head_can_carry_back_are_refused(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra="max_channels = 2000\n").start()
        try:
            status, body = poll(sup.http_port, [f"/c/{i}" for i in range(200)])
            self.assertEqual(status, 413, body)
            self.assertIn("max_header_bytes", body["error"]["message"])
        finally:
            sup.cleanup()


class PollHangTest(unittest.TestCase):
    def test_polls_racing_on_one_cursor_all_answer_and_leave_no_sockets(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra='poll_timeout = "2s"\nsession_ttl = "1s"\n').start()
        try:
            port = sup.http_port
            pid = sup.worker_pids()[0]
            channels = [f"/race/{i}" for i in range(20)]
            _, first = poll(port, channels)
            # No cache entry for this cursor (a first poll makes none; a worker that did
            # sweeps it after session_ttl): every racing poll must build one.
            wait_for(lambda: sup.status()["workers"][0]["poll_sessions"] == 0, 10, what="no cached session")
            fds_before = count_fds(pid)
            q = urllib.parse.urlencode([("channel", c) for c in channels] + [("cursor", first["cursor"])])
            n = 200
            socks = []
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=20)
                socks.append(s)
            request = f"GET /v1/poll?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            # All at once: the worker is stopped while they arrive, so it reads them in
            # one batch, each one before the hub has answered the subscribes of the last.
            wait_for(lambda: count_fds(pid) >= fds_before + n, 10, what="the connections handed to the worker")
            os.kill(pid, signal.SIGSTOP)
            try:
                for s in socks:
                    s.sendall(request)
            finally:
                os.kill(pid, signal.SIGCONT)
            answered = 0
            deadline = time.monotonic() + 20  # poll_timeout is 2 s: every answer is due long before
            for s in socks:
                data = b""
                try:
                    while True:
                        s.settimeout(max(0.01, deadline - time.monotonic()))
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except socket.timeout:
                    pass
                if data.startswith(b"HTTP/1.1 200"):
                    answered += 1
                s.close()
            self.assertEqual(answered, n, "some polls on the shared cursor never answered")
            wait_for(lambda: count_fds(pid) <= fds_before + 2, 10,
                     what=f"the worker's fds back near {fds_before} (none left in CLOSE-WAIT)")
        finally:
            sup.cleanup()

    def test_a_stalled_supervisor_fails_hub_calls_within_hub_timeout(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra='hub_timeout = "1s"\n').start()
        try:
            port = sup.http_port
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            os.kill(sup.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                conn.request("POST", "/v1/publish/stall", body="1", headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = json.loads(r.read())
                waited = time.monotonic() - started
                self.assertEqual(r.status, 503, body)
                self.assertEqual(body["error"]["code"], "unavailable")
                self.assertLess(waited, 10, "the publish waited far past hub_timeout")
                self.assertIsNotNone(r.getheader("Retry-After"))
            finally:
                os.kill(sup.proc.pid, signal.SIGCONT)
            # The hub answers again: late answers were dropped, nothing is stuck.
            wait_for(lambda: publish(port, "/stall", 2)[0] == 200, 10, what="publishing again")
        finally:
            sup.cleanup()


class FirstPollMemoryTest(unittest.TestCase):
    def test_first_polls_cost_the_supervisor_nothing(self):
        sup = Supervisor(workers=1, tls=False).start()
        try:
            port = sup.http_port
            rss0 = rss_kb(sup.proc.pid)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for i in range(1000):
                q = urllib.parse.urlencode([("channel", f"/x{i}/{j}") for j in range(128)])
                conn.request("GET", "/v1/poll?" + q)
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.read()
            conn.close()
            st = sup.status()
            self.assertEqual(st["hub"]["channels"], 0, "first polls created hub channels")
            w = wait_for(lambda: (lambda w: w if w["polls"] >= 1000 else None)(sup.status()["workers"][0]), 5,
                         what="stats")
            self.assertEqual(w["poll_sessions"], 0, "first polls created cache entries")
            grown = rss_kb(sup.proc.pid) - rss0
            print(f"\n1,000 first polls over 128 channels: supervisor RSS grew {grown} KiB")
            if not SANITIZED:  # ASan's shadow memory and quarantine are not ours to budget
                self.assertLess(grown, 8 * 1024)
        finally:
            sup.cleanup()

    def test_the_cache_is_bounded_in_subscriptions(self):
        sup = Supervisor(workers=1, tls=False,
                         gateway_extra='session_cache_subscriptions = 1000\npoll_timeout = "1ms"\n').start()
        try:
            port = sup.http_port
            channels = [f"/s/{j}" for j in range(100)]
            for _ in range(30):
                _, first = poll(port, channels)
                status, _ = poll(port, channels, first["cursor"])
                self.assertEqual(status, 200)
            w = wait_for(lambda: (lambda w: w if w["polls"] >= 60 else None)(sup.status()["workers"][0]), 5,
                         what="stats")
            self.assertLessEqual(w["poll_sessions"], 10)
            self.assertLessEqual(sup.status()["hub"]["channels"], 100)
        finally:
            sup.cleanup()


def fin_wait_sockets(port):
    """Server-side sockets of `port` stuck in FIN-WAIT-1 (waiting behind unread data)."""
    out = subprocess.run(["ss", "-Htn", "state", "fin-wait-1", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


class ResetTest(unittest.TestCase):
    def test_a_cut_slow_consumer_is_reset_not_left_in_fin_wait(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra='send_queue_bytes = "256KiB"\n').start()
        try:
            port = sup.http_port
            c = WsClient(port)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.assertTrue(c.command("subscribe", channel="/slow")["ok"])
            # Never read again: the kernel buffers fill, then the worker's queue.
            payload = "x" * 60000
            pub = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for _ in range(200):
                pub.request("POST", "/v1/publish/slow", body=json.dumps(payload),
                            headers={"Content-Type": "application/json"})
                pub.getresponse().read()
                if sup.status()["workers"][0]["slow_consumers"] >= 1:
                    break
            wait_for(lambda: sup.status()["workers"][0]["slow_consumers"] >= 1, 10, what="the slow consumer cut")
            # A FIN would wait behind the unread megabytes for minutes: nothing may wait.
            wait_for(lambda: fin_wait_sockets(port) == [], 3, what="no socket of the port in FIN-WAIT-1")
            wait_for(lambda: sup.status()["workers"][0].get("resets", 0) >= 1, 5, what="the cut counted as a reset")
            text = sup.ctl("metrics").stdout
            self.assertRegex(text, r'dingo_worker_resets_total\{[^}]*\} [1-9]')
        finally:
            sup.cleanup()

    def test_a_slowloris_is_reset_at_the_header_deadline(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra='header_timeout = "1s"\n').start()
        try:
            s = socket.create_connection(("127.0.0.1", sup.http_port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            s.settimeout(10)
            with self.assertRaises(ConnectionResetError):
                while s.recv(4096):
                    pass
        finally:
            sup.cleanup()


class ProtocolErrorTest(unittest.TestCase):
    def test_after_a_protocol_error_nothing_more_is_read(self):
        # A client that breaks the protocol and ignores our close frame used to be read
        # (and discarded) for the 2 s close wait: gigabytes, a core of CPU.
        sup = Supervisor(workers=1, tls=False).start()
        try:
            c = WsClient(sup.http_port)
            c.send_frame(0x2, b"binary is not a command")  # answered with close 1003
            junk = b"\x00" * 65536
            sent = 0
            c.sock.settimeout(2)
            try:
                while sent < (256 << 20):
                    sent += c.sock.send(junk)
            except (socket.timeout, ConnectionError):
                pass  # the worker stopped reading (buffers full), or closed the connection
            self.assertLess(sent, 64 << 20, f"the worker went on reading: {sent >> 20} MiB taken")
            self.assertTrue(wait_closed(c.sock, timeout=10))
        finally:
            sup.cleanup()


class PeerLimitsTest(unittest.TestCase):
    def test_open_connections_per_address(self):
        sup = Supervisor(workers=2, dispatch="ip-hash", tls=False,
                         gateway_extra="max_connections_per_ip = 5\n").start()
        try:
            port = sup.http_port
            held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
            for s in held:  # each one served: the five are in
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            status, body = None, None
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            self.assertEqual(r.status, 503)
            self.assertEqual(r.getheader("Retry-After"), "1")
            self.assertEqual(json.loads(r.read())["error"]["code"], "limit")
            conn.close()
            # Another address is not limited by this one's connections.
            other = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=("127.0.0.7", 0))
            other.request("GET", "/healthz")
            self.assertEqual(other.getresponse().status, 200)
            other.close()
            # One closes: room for one more.
            held.pop().close()
            wait_for(lambda: http_status(port) == 200, 5, what="a free place again")
            wait_for(lambda: sum(x["peer_limited"] for x in sup.status()["workers"]) >= 1, 5,
                     what="the refusal counted")
            for s in held:
                s.close()
        finally:
            sup.cleanup()

    def test_new_connections_per_second_per_address(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra="new_connections_per_ip = 20\n").start()
        try:
            codes = [http_status(sup.http_port) for _ in range(60)]
            self.assertGreaterEqual(codes.count(503), 20, codes)
            self.assertGreaterEqual(codes.count(200), 20, codes)
            time.sleep(1.1)  # the bucket refills: what is tested is the rate itself
            self.assertEqual(http_status(sup.http_port), 200)
        finally:
            sup.cleanup()


def http_status(port, source="127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


class StreamLimitTest(unittest.TestCase):
    def test_held_polls_and_sse_streams_are_bounded_together(self):
        sup = Supervisor(workers=1, tls=False, gateway_extra='max_streams = 3\npoll_timeout = "20s"\n').start()
        try:
            port = sup.http_port
            _, first = poll(port, ["/st"])
            socks = []
            q = urllib.parse.urlencode([("channel", "/st"), ("cursor", first["cursor"])])
            for _ in range(2):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(f"GET /v1/poll?{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                socks.append(s)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /v1/sse?channel=/st HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
            wait_for(lambda: (lambda w: w["held_polls"] + w["sse_streams"] == 3)(sup.status()["workers"][0]), 10,
                     what="three streams held")
            status, body = poll(port, ["/st"], first["cursor"])
            self.assertEqual(status, 503, body)
            self.assertIn("max_streams", body["error"]["message"])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/v1/sse?channel=/st")
            self.assertEqual(conn.getresponse().status, 503)
            conn.close()
            for s in socks:
                s.close()
        finally:
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
