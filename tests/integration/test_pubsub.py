"""Pub/sub across workers: WebSocket protocol, hub, history, recovery, limits.

Real binaries on loopback, two workers under round-robin unless a test says otherwise."""
import asyncio
import http.client
import json
import os
import signal
import socket
import struct
import threading
import time
import unittest

from harness import SANITIZED, Supervisor, certs, metrics_problems, series, wait_for
from wsclient import BINARY, CLOSE, CONT, PING, PONG, TEXT, Closed, WsClient, wait_closed


def publish(port, channel, data, token=None, raw=None):
    """POST /v1/publish; returns (status, parsed body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else json.dumps(data)
        conn.request("POST", f"/v1/publish{channel}", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def get_json(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def seq(position):
    return int(position.split(".")[1])


def ws_per_worker(sup):
    return [w["ws_connections"] for w in sup.status()["workers"]]


def clients_on_both_workers(sup):
    """Two WebSocket clients on different workers, as the status shows. The hand-off's
    round-robin alternates; the kernel accept mode's picks at random, so a second
    client that lands beside the first is closed and another one tried."""
    a = WsClient(sup.http_port)
    wait_for(lambda: sorted(ws_per_worker(sup)) == [0, 1], 5, what="the first WebSocket counted")
    for _ in range(20):
        b = WsClient(sup.http_port)
        wait_for(lambda: sum(ws_per_worker(sup)) == 2, 5, what="the second WebSocket counted")
        if sorted(ws_per_worker(sup)) == [1, 1]:
            return a, b
        b.close()
        wait_for(lambda: sum(ws_per_worker(sup)) == 1, 5, what="the extra WebSocket gone")
    raise AssertionError("20 WebSockets in a row reached the first one's worker")


class PubSubTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sup = Supervisor(workers=2, dispatch="round-robin",
                             gateway_extra="client_publish = true\nmax_channels = 4\n"
                                           "commands_per_second = 100000\n").start()

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def setUp(self):
        self.clients = []
        wait_for(lambda: sum(ws_per_worker(self.sup)) == 0, 10, what="no WebSocket left from earlier tests")

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self):
        c = WsClient(self.sup.http_port)
        self.clients.append(c)
        return c

    def test_subscriber_on_one_worker_receives_publish_from_another(self):
        a, b = clients_on_both_workers(self.sup)
        self.clients += [a, b]
        r = a.command("subscribe", channel="/cross")
        self.assertTrue(r["ok"], r)
        p = b.command("publish", channel="/cross", data={"from": "b"})
        self.assertTrue(p["ok"], p)
        m = a.next_message()
        self.assertEqual(m, {"event": "message", "channel": "/cross", "position": p["position"],
                             "data": {"from": "b"}})
        # REST publish reaches it too, and the channel counts subscribers over all workers.
        b.command("subscribe", channel="/cross")
        status, body = publish(self.sup.http_port, "/cross", [1, 2, 3])
        self.assertEqual(status, 200, body)
        self.assertEqual(a.next_message()["data"], [1, 2, 3])
        self.assertEqual(b.next_message()["position"], body["position"])
        status, info = get_json(self.sup.http_port, "/v1/channels/cross")
        self.assertEqual((status, info["subscribers"], info["position"]), (200, 2, body["position"]))

    def test_reconnect_with_since_gets_exactly_the_missed_messages(self):
        a = self.client()
        first = a.command("subscribe", channel="/resume")
        for i in range(3):
            publish(self.sup.http_port, "/resume", {"n": i})
        seen = [a.next_message() for _ in range(3)]
        last = seen[-1]["position"]
        a.close()
        self.clients.remove(a)
        missed = [publish(self.sup.http_port, "/resume", {"n": 10 + i})[1]["position"] for i in range(4)]
        b = self.client()
        r = b.command("subscribe", channel="/resume", since=last)
        self.assertTrue(r["ok"] and r["recovered"], r)
        self.assertEqual([m["position"] for m in r["messages"]], missed)
        self.assertEqual([m["data"]["n"] for m in r["messages"]], [10, 11, 12, 13])
        self.assertEqual(r["position"], missed[-1])
        # Live messages follow with no gap.
        _, p = publish(self.sup.http_port, "/resume", "live")
        self.assertEqual(b.next_message()["position"], p["position"])
        self.assertEqual(seq(p["position"]), seq(missed[-1]) + 1)
        # History answers the same.
        status, h = get_json(self.sup.http_port, f"/v1/history/resume?since={last}&limit=2")
        self.assertEqual(status, 200)
        self.assertTrue(h["recovered"])
        self.assertEqual([m["position"] for m in h["messages"]], missed[:2])
        self.assertEqual(first["position"].split(".")[0], last.split(".")[0])

    def test_race_publish_while_resubscribing_1000_rounds(self):
        sub, pub = clients_on_both_workers(self.sup)
        self.clients += [sub, pub]
        r = sub.command("subscribe", channel="/race")
        last = seq(r["position"])
        epoch = r["position"].split(".")[0]
        stop = threading.Event()
        published = []

        def publisher():
            while not stop.is_set():
                p = pub.command("publish", channel="/race", data=len(published))
                if p.get("ok"):
                    published.append(seq(p["position"]))
                time.sleep(0.0005)

        t = threading.Thread(target=publisher)
        t.start()
        received = []

        def take(m):
            nonlocal last
            s = seq(m["position"])
            self.assertEqual(s, last + 1, f"gap or duplicate: {last} then {s}")
            last = s
            received.append(s)

        try:
            for _ in range(1000):
                u = sub.command("unsubscribe", channel="/race")
                self.assertTrue(u["ok"], u)
                for m in sub.pushed:  # messages that were on their way before the reply
                    take(m)
                sub.pushed.clear()
                r = sub.command("subscribe", channel="/race", since=f"{epoch}.{last}")
                self.assertTrue(r["recovered"], r)
                for m in sub.pushed:  # impossible: nothing is pushed before the reply
                    self.fail(f"message before the subscribe reply: {m}")
                for m in r["messages"]:
                    take(m)
        finally:
            stop.set()
            t.join()
        # Whatever was still on its way arrives, in order, and then everything is accounted for.
        deadline = time.time() + 5
        while last < max(published) and time.time() < deadline:
            take(sub.next_message())
        self.assertEqual(received, list(range(received[0], max(published) + 1)))
        self.assertGreater(len(published), 100, "the publisher must actually race the subscriber")

    def test_protocol_errors_get_replies_and_the_connection_stays(self):
        c = self.client()
        for channel in ["no-slash", "/has space", "/" + "x" * 255, "", 42]:
            r = c.command("subscribe", channel=channel)
            self.assertEqual((r["ok"], r["error"]["code"]), (False, "bad_request"), (channel, r))
        c.send_text("{not json")
        r = c.recv_json()
        self.assertEqual((r["id"], r["error"]["code"]), (None, "bad_request"))
        self.assertEqual(c.command("frobnicate")["error"]["code"], "bad_request")
        self.assertEqual(c.command("subscribe", channel="/a", since="garbage")["error"]["code"], "bad_request")
        self.assertEqual(c.command("publish", channel="/a")["error"]["code"], "bad_request")  # no data
        for i in range(4):
            self.assertTrue(c.command("subscribe", channel=f"/lim{i}")["ok"])
        self.assertEqual(c.command("subscribe", channel="/lim9")["error"]["code"], "limit")
        self.assertEqual(c.command("subscribe", channel="/lim0")["error"]["code"], "bad_request")  # twice
        self.assertTrue(c.command("ping")["ok"])

    def test_fragments_with_a_ping_between_them(self):
        c = self.client()
        msg = json.dumps({"id": 5, "op": "ping"}).encode()
        c.send_frame(TEXT, msg[:4], fin=False)
        c.send_frame(PING, b"hi")
        c.send_frame(CONT, msg[4:9], fin=False)
        c.send_frame(CONT, msg[9:], fin=True)
        self.assertEqual(c.recv_frame(), (PONG, b"hi"))
        self.assertEqual(c.recv_json(), {"id": 5, "ok": True})

    def test_close_handshake_echoes_the_code(self):
        c = WsClient(self.sup.http_port)
        c.send_frame(CLOSE, struct.pack("!H", 4000) + b"bye")
        self.assertEqual(c.expect_close(), 4000)
        self.assertTrue(wait_closed(c.sock))

    def assert_closed_with(self, send, code):
        c = WsClient(self.sup.http_port)
        send(c)
        self.assertEqual(c.expect_close(), code)
        self.assertTrue(wait_closed(c.sock), "the server closes the TCP connection")
        c.sock.close()

    def test_bad_utf8_closes_1007(self):
        self.assert_closed_with(lambda c: c.send_frame(TEXT, b'{"op":"ping","x":"\xc3\x28"}'), 1007)
        # Split across fragments, a valid character passes and an invalid one fails.
        self.assert_closed_with(lambda c: (c.send_frame(TEXT, b'"\xe2\x82', fin=False),
                                           c.send_frame(CONT, b'\x28"')), 1007)

    def test_oversize_closes_1009(self):
        # max_message_size is 64 KiB by default; the header alone decides.
        self.assert_closed_with(lambda c: c.send_frame(TEXT, b"", length=1 << 20), 1009)

    def test_frame_errors_close_1002_or_1003(self):
        self.assert_closed_with(lambda c: c.send_frame(TEXT, b'{"op":"ping"}', mask=False), 1002)
        self.assert_closed_with(lambda c: c.send_frame(TEXT, b"x", rsv=4), 1002)
        self.assert_closed_with(lambda c: c.send_frame(CONT, b"x"), 1002)
        self.assert_closed_with(lambda c: c.send_frame(PING, b"x" * 126), 1002)
        self.assert_closed_with(lambda c: c.send_frame(0x3, b"x"), 1002)
        self.assert_closed_with(lambda c: c.send_frame(BINARY, b"\x00\x01"), 1003)

    def test_counters_reach_status_and_metrics(self):
        c = self.client()
        c.command("subscribe", channel="/metrics")
        publish(self.sup.http_port, "/metrics", 1)
        c.next_message()

        def counted():
            ws = self.sup.status()["workers"]
            return sum(w["delivered"] for w in ws) >= 1 and sum(w["published"] for w in ws) >= 1
        wait_for(counted, 5, what="delivery counters")
        text = self.sup.ctl("metrics").stdout
        self.assertEqual(metrics_problems(text), [])

        def total(name):
            found = series(text, name)
            self.assertTrue(found, f"no {name} series")
            return sum(v for _, v in found)
        # What this test did shows up as values, not only as family names.
        self.assertGreaterEqual(total("dingo_worker_messages_delivered_total"), 1)
        self.assertGreaterEqual(total("dingo_worker_messages_published_total"), 1)
        self.assertGreaterEqual(total("dingo_hub_messages_published_total"), 1)
        self.assertGreaterEqual(total("dingo_hub_channels"), 1)
        # The others are there, per worker, even at zero.
        workers = self.sup.status()["workers"]
        for name in ["dingo_worker_recoveries_total", "dingo_worker_recovery_failures_total",
                     "dingo_worker_slow_consumer_disconnects_total", "dingo_worker_channels"]:
            self.assertEqual(len(series(text, name)), len(workers), name)


class RestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sup = Supervisor(workers=2, gateway_extra='publish_token = "s3cret"\n').start()

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def test_publish_needs_the_token(self):
        port = self.sup.http_port
        self.assertEqual(publish(port, "/t", 1)[0], 401)
        self.assertEqual(publish(port, "/t", 1, token="wrong")[0], 401)
        status, body = publish(port, "/t", {"a": [1, 2]}, token="s3cret")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["channel"], "/t")
        self.assertEqual(seq(body["position"]), 1)

    def test_publish_token_must_match_whole(self):
        # The token is compared whole, whatever the lengths: a prefix, an extension or a
        # header too short to hold the scheme is refused, the scheme's case is free.
        def status(authorization):
            conn = http.client.HTTPConnection("127.0.0.1", self.sup.http_port, timeout=10)
            try:
                conn.request("POST", "/v1/publish/tok", body="1",
                             headers={"Content-Type": "application/json", "Authorization": authorization})
                r = conn.getresponse()
                r.read()
                return r.status
            finally:
                conn.close()
        cases = {"Bearer s3cre": 401, "Bearer s3cret2": 401, "Bearer ": 401,
                 "Bearer": 401, "Bear": 401, "Basic s3cret": 401, "Bearer  s3cret": 401,
                 "bearer s3cret": 200, "BEARER s3cret": 200, "Bearer s3cret": 200}
        self.assertEqual({a: status(a) for a in cases}, cases)

    def test_bad_requests_are_json_errors(self):
        port = self.sup.http_port
        status, body = publish(port, "/t", None, token="s3cret", raw="{not json")
        self.assertEqual((status, body["error"]["code"]), (400, "bad_request"))
        status, body = publish(port, "/bad%20name", 1, token="s3cret")
        self.assertEqual((status, body["error"]["code"]), (400, "bad_request"))
        status, body = get_json(port, "/v1/history/t?since=nope")
        self.assertEqual((status, body["error"]["code"]), (400, "bad_request"))
        status, body = get_json(port, "/v1/history/t?limit=0")
        self.assertEqual(status, 400)
        status, body = get_json(port, "/v1/publish/t")
        self.assertEqual(status, 405)
        status, body = get_json(port, "/v1/nothing")
        self.assertEqual((status, body["error"]["code"]), (404, "not_found"))

    def test_percent_encoded_channel_and_history(self):
        port = self.sup.http_port
        positions = [publish(port, "/rooms%2Fpct", i, token="s3cret")[1]["position"] for i in range(3)]
        status, h = get_json(port, "/v1/history/rooms/pct")
        self.assertEqual(status, 200)
        self.assertEqual(h["channel"], "/rooms/pct")
        self.assertEqual([m["position"] for m in h["messages"]], positions)
        self.assertEqual([m["data"] for m in h["messages"]], [0, 1, 2])


class HubRestartTest(unittest.TestCase):
    def test_a_fresh_hub_answers_recovered_false(self):
        sup = Supervisor(workers=2)
        try:
            sup.start()
            _, p = publish(sup.http_port, "/epoch", "before")
            sup.stop()
            sup.start()
            c = WsClient(sup.http_port)
            r = c.command("subscribe", channel="/epoch", since=p["position"])
            self.assertTrue(r["ok"])
            self.assertFalse(r["recovered"])
            self.assertEqual(r["messages"], [])
            self.assertNotEqual(r["position"].split(".")[0], p["position"].split(".")[0])
            status, h = get_json(sup.http_port, f"/v1/history/epoch?since={p['position']}")
            self.assertFalse(h["recovered"])
            c.close()

            def counted():
                return sum(w["not_recovered"] for w in sup.status()["workers"]) >= 1
            wait_for(counted, 5, what="the recovery failure counted")
        finally:
            sup.cleanup()


class LimitsTest(unittest.TestCase):
    def test_stalled_reader_is_disconnected_and_memory_stays_bounded(self):
        sup = Supervisor(workers=1, gateway_extra="send_queue_bytes = \"256KiB\"\n").start()
        try:
            c = WsClient(sup.http_port)
            c.command("subscribe", channel="/flood")
            pid = sup.worker_pids()[0]
            rss_before = rss_kb(pid)
            payload = "x" * 60000
            conn = http.client.HTTPConnection("127.0.0.1", sup.http_port, timeout=10)
            for _ in range(400):  # 24 MB, far past 256 KiB plus what socket buffers hold
                conn.request("POST", "/v1/publish/flood", body=json.dumps(payload))
                conn.getresponse().read()
            conn.close()
            wait_for(lambda: sup.status()["workers"][0]["slow_consumers"] >= 1, 10,
                     what="the stalled reader counted as a slow consumer")
            self.assertEqual(sup.status()["workers"][0]["ws_connections"], 0)
            # Its socket is closed: reading drains what the kernel held, then EOF.
            self.assertTrue(wait_closed(c.sock, timeout=10))
            grown = rss_kb(pid) - rss_before
            if not SANITIZED:  # ASan's quarantine alone holds up to 256 MB of freed memory
                self.assertLess(grown, 16 * 1024, f"worker RSS grew {grown} KiB")
        finally:
            sup.cleanup()

    def test_rate_limit(self):
        sup = Supervisor(workers=1, gateway_extra="commands_per_second = 5\n").start()
        try:
            c = WsClient(sup.http_port)
            for i in range(30):
                c.send_text(json.dumps({"id": i, "op": "ping"}))
            replies = [c.recv_json() for _ in range(30)]
            limited = [r for r in replies if not r["ok"]]
            self.assertTrue(all(r["error"]["code"] == "limit" for r in limited))
            self.assertGreaterEqual(len(limited), 15)  # burst 10, a few more refill
            time.sleep(1.0)
            self.assertTrue(c.command("ping")["ok"])  # tokens come back
            c.close()
        finally:
            sup.cleanup()

    def test_peer_that_misses_pongs_is_closed(self):
        sup = Supervisor(workers=1, gateway_extra='ping_interval = "500ms"\npong_timeout = "500ms"\n').start()
        try:
            silent = WsClient(sup.http_port)
            polite = WsClient(sup.http_port)
            silent.sock.settimeout(5)
            op, _ = silent.recv_frame()
            self.assertEqual(op, PING)
            # The polite client answers every ping and stays; the silent one is closed.
            t0 = time.time()
            silent_closed_after = None
            polite.sock.settimeout(0.05)
            silent.sock.settimeout(0.05)
            while time.time() - t0 < 4:
                try:
                    op, payload = polite.recv_frame()
                    if op == PING:
                        polite.send_frame(PONG, payload)
                except socket.timeout:
                    pass
                if silent_closed_after is None:
                    try:
                        while True:
                            silent.recv_frame()  # pings keep coming until the close
                    except socket.timeout:
                        pass
                    except (Closed, OSError):
                        silent_closed_after = time.time() - t0
            self.assertIsNotNone(silent_closed_after, "a peer without pongs is closed")
            self.assertLess(silent_closed_after, 3)
            polite.sock.settimeout(5)
            self.assertTrue(polite.command("ping")["ok"])
            polite.close()
        finally:
            sup.cleanup()


class DrainTest(unittest.TestCase):
    def test_drain_sends_reconnect_then_1012(self):
        sup = Supervisor(workers=2).start()
        try:
            c = WsClient(sup.http_port)
            c.command("subscribe", channel="/d")
            sup.proc.send_signal(signal.SIGTERM)
            c.sock.settimeout(5)
            m = c.recv_json()
            self.assertEqual(m["event"], "reconnect")
            self.assertTrue(250 <= m["after_ms"] <= 5000, m)
            with self.assertRaises(Closed) as cm:
                c.recv_frame()
            self.assertEqual(cm.exception.code, 1012)
            c.send_frame(CLOSE, struct.pack("!H", 1012))
            self.assertTrue(wait_closed(c.sock))
            sup.proc.wait(timeout=10)
        finally:
            sup.cleanup()


class TlsWebSocketTest(unittest.TestCase):
    def test_over_tls(self):
        sup = Supervisor(workers=2).start()
        try:
            ca = os.path.join(certs(), "ca.pem")
            a = WsClient(sup.tls_port, tls_ca=ca)
            b = WsClient(sup.tls_port, tls_ca=ca)
            r = a.command("subscribe", channel="/secure")
            big = "y" * 50000  # several TLS records
            _, p = publish(sup.http_port, "/secure", big)
            m = a.next_message()
            self.assertEqual((m["position"], m["data"]), (p["position"], big))
            r2 = b.command("subscribe", channel="/secure", since=r["position"])
            self.assertEqual([x["data"] for x in r2["messages"]], [big])
            a.close()
            b.close()
            # A last response far bigger than the socket buffers, over TLS with
            # Connection: close: all of it arrives before close_notify and the FIN.
            for _ in range(15):
                publish(sup.http_port, "/secure", big)
            import ssl
            ctx = ssl.create_default_context(cafile=ca)
            with socket.create_connection(("127.0.0.1", sup.tls_port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                    t.sendall(b"GET /v1/history/secure HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while True:
                        chunk = t.recv(65536)
                        if not chunk:
                            break
                        data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            self.assertIn(b"200 OK", head)
            h = json.loads(body)
            self.assertEqual(len(h["messages"]), 16)
            self.assertGreater(len(body), 800000)
        finally:
            sup.cleanup()


class WebSocketsLibraryTest(unittest.TestCase):
    """Debian's python3-websockets, a client nobody here wrote."""

    def test_library_client(self):
        import websockets

        sup = Supervisor(workers=2, gateway_extra="client_publish = true\n").start()

        async def scenario():
            url = f"ws://127.0.0.1:{sup.http_port}/v1/ws"
            async with websockets.connect(url) as sub, websockets.connect(url) as pub:
                await sub.send(json.dumps({"id": 1, "op": "subscribe", "channel": "/lib"}))
                r = json.loads(await sub.recv())
                assert r["ok"], r
                positions = []
                for i in range(20):
                    await pub.send(json.dumps({"id": i, "op": "publish", "channel": "/lib", "data": {"i": i}}))
                    positions.append(json.loads(await pub.recv())["position"])
                got = [json.loads(await asyncio.wait_for(sub.recv(), 5)) for _ in range(20)]
                assert [g["position"] for g in got] == positions, (got, positions)
                assert [g["data"]["i"] for g in got] == list(range(20))
                await sub.ping()  # the library's own ping: the server pongs
                # a big message in one frame, the library's defaults
                await pub.send(json.dumps({"id": 99, "op": "publish", "channel": "/lib", "data": "z" * 60000}))
                assert json.loads(await pub.recv())["ok"]
                assert json.loads(await sub.recv())["data"] == "z" * 60000
            return sub.close_code

        try:
            code = asyncio.run(asyncio.wait_for(scenario(), 30))
            self.assertEqual(code, 1000)
        finally:
            sup.cleanup()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    unittest.main()
