"""Long-polling and SSE: cursors any worker resumes, the session cache, drains.

Real binaries on loopback, two workers under round-robin unless a test says otherwise."""
import http.client
import json
import os
import signal
import socket
import threading
import time
import unittest
import urllib.parse

from harness import Supervisor, metrics_problems, release_only, series, wait_for
from test_pubsub import publish, rss_kb, seq
from wsclient import WsClient


def poll(port, channels, cursor=None, since=(), close=True, timeout=30):
    """One GET /v1/poll on a fresh connection; returns (status, body)."""
    q = [("channel", c) for c in channels]
    if cursor:
        q.append(("cursor", cursor))
    q += [("since", s) for s in since]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/v1/poll?" + urllib.parse.urlencode(q),
                     headers={"Connection": "close"} if close else {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


class SseReader:
    """A minimal EventSource: parses events off a raw socket."""

    def __init__(self, port, channels, last_event_id=None, cursor=None):
        q = [("channel", c) for c in channels] + ([("cursor", cursor)] if cursor else [])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.sock.sendall(f"GET /v1/sse?{urllib.parse.urlencode(q)} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode()
        self.body = b""  # de-chunked
        self.ended = False

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    def _dechunk(self):
        while True:
            if b"\r\n" not in self.buf:
                return
            size_line, rest = self.buf.split(b"\r\n", 1)
            n = int(size_line, 16)
            if len(rest) < n + 2:
                return
            self.body += rest[:n]
            self.buf = rest[n + 2:]
            if n == 0:
                self.ended = True
                return

    def event(self, timeout=10):
        """The next event as a dict (id, event, data); comments are skipped."""
        self.sock.settimeout(timeout)
        while True:
            self._dechunk()
            while b"\n\n" in self.body:
                block, self.body = self.body.split(b"\n\n", 1)
                fields = {}
                for line in block.decode().split("\n"):
                    if not line or line.startswith(":"):
                        continue
                    k, _, v = line.partition(": ")
                    fields[k] = v
                if "data" in fields or "event" in fields:
                    return fields
            if self.ended:
                raise EOFError
            self.buf += self._recv()

    def close(self):
        self.sock.close()


class PollingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sup = Supervisor(workers=2, dispatch="round-robin",
                             gateway_extra='poll_timeout = "20s"\nclient_publish = true\n').start()

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def test_polls_on_alternating_workers_get_every_message_once_in_order(self):
        port = self.sup.http_port
        status, first = poll(port, ["/rr"])
        self.assertEqual(status, 200, first)
        self.assertEqual(first["messages"], [])
        total = 60
        stop = threading.Event()

        def publisher():
            for i in range(total):
                publish(port, "/rr", i)
                time.sleep(0.005)
            stop.set()

        t = threading.Thread(target=publisher)
        t.start()
        got, cursor = [], first["cursor"]
        before = [w["polls"] for w in self.sup.status()["workers"]]
        deadline = time.time() + 30
        while len(got) < total and time.time() < deadline:
            status, r = poll(port, ["/rr"], cursor)  # Connection: close: round-robin moves it
            self.assertEqual(status, 200, r)
            self.assertTrue(r["recovered"], r)
            got += [m["data"] for m in r["messages"]]
            cursor = r["cursor"]
        t.join()
        self.assertEqual(got, list(range(total)))
        # Stats come once a second.
        wait_for(lambda: all(w["polls"] > b for w, b in zip(self.sup.status()["workers"], before)), 5,
                 what="polls answered by both workers")

    def test_held_poll_answers_right_after_a_publish(self):
        port = self.sup.http_port
        _, r = poll(port, ["/fast"])
        result = {}

        def held():
            result["r"] = poll(port, ["/fast"], r["cursor"])
            result["t"] = time.monotonic()

        t = threading.Thread(target=held)
        t.start()
        wait_for(lambda: sum(w["held_polls"] for w in self.sup.status()["workers"]) == 1, 5,
                 what="the poll being held")
        t0 = time.monotonic()
        publish(port, "/fast", "now")
        t.join(10)
        latency = result["t"] - t0
        print(f"\nheld poll answered {latency * 1000:.1f} ms after the publish call")
        self.assertLess(latency, 2.0, "answered at the publish, not at the poll timeout (20 s)")
        self.assertEqual([m["data"] for m in result["r"][1]["messages"]], ["now"])

    def test_two_polls_with_one_cursor_both_answer(self):
        # A client that retries while its first poll is still held (ip-hash keeps both
        # on one worker here: the second must not steal the first one's wake-up).
        sup = Supervisor(workers=1, tls=False, gateway_extra='poll_timeout = "20s"\n').start()
        try:
            port = sup.http_port
            _, r = poll(port, ["/twice"])
            results = []
            threads = [threading.Thread(target=lambda: results.append(poll(port, ["/twice"], r["cursor"])))
                       for _ in range(2)]
            for t in threads:
                t.start()
            wait_for(lambda: sup.status()["workers"][0]["held_polls"] == 2, 5, what="both polls held")
            publish(port, "/twice", "x")
            for t in threads:
                t.join(5)
            self.assertEqual([[m["data"] for m in b["messages"]] for _, b in results], [["x"], ["x"]])
        finally:
            sup.cleanup()

    def test_several_channels_and_every_pending_message(self):
        port = self.sup.http_port
        _, r = poll(port, ["/m1", "/m2"], close=False)
        for i in range(3):
            publish(port, "/m1", i)
            publish(port, "/m2", 10 + i)
        _, r2 = poll(port, ["/m1", "/m2"], r["cursor"])
        by = {}
        for m in r2["messages"]:
            by.setdefault(m["channel"], []).append(m["data"])
        self.assertEqual(by, {"/m1": [0, 1, 2], "/m2": [10, 11, 12]})
        self.assertEqual(set(r2["positions"]), {"/m1", "/m2"})

    def test_bad_cursors_are_rejected(self):
        port = self.sup.http_port
        _, r = poll(port, ["/bad"])
        good = r["cursor"]
        forged = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
        for cursor in ["garbage!", "AAAA", forged, good + "x", good[:-2]]:
            status, body = poll(port, ["/bad"], cursor)
            self.assertEqual((status, body["error"]["code"]), (400, "bad_request"), cursor)
        for since in ["/bad", "/bad@nope", "/other@abc.1"]:
            status, body = poll(port, ["/bad"], since=[since])
            self.assertEqual(status, 400, since)
        status, body = poll(port, [])
        self.assertEqual(status, 400)
        status, body = poll(port, ["no-slash"])
        self.assertEqual(status, 400)
        # The worker is still fine.
        self.assertEqual(poll(port, ["/bad"], good)[0], 200)

    def test_moving_between_websocket_poll_and_sse_loses_nothing(self):
        port = self.sup.http_port
        ws = WsClient(port)
        sub = ws.command("subscribe", channel="/move")
        ws.command("publish", channel="/move", data="ws-1")
        last = ws.next_message()["position"]
        ws.close()
        # Away: two messages. Then long-polling from the WebSocket position.
        p1 = publish(port, "/move", "away-1")[1]["position"]
        p2 = publish(port, "/move", "away-2")[1]["position"]
        _, r = poll(port, ["/move"], since=[f"/move@{last}"])
        self.assertTrue(r["recovered"])
        self.assertEqual([m["position"] for m in r["messages"]], [p1, p2])
        # Then SSE from the poll's cursor.
        p3 = publish(port, "/move", "away-3")[1]["position"]
        sse = SseReader(port, ["/move"], cursor=r["cursor"])
        state = sse.event()
        self.assertEqual(state["event"], "state")
        self.assertTrue(json.loads(state["data"])["recovered"])
        m = sse.event()
        self.assertEqual(json.loads(m["data"])["position"], p3)
        sse.close()
        # And back to WebSocket with the position SSE gave.
        p4 = publish(port, "/move", "away-4")[1]["position"]
        ws = WsClient(port)
        back = ws.command("subscribe", channel="/move", since=p3)
        self.assertEqual([x["position"] for x in back["messages"]], [p4])
        ws.close()
        self.assertEqual(sub["position"].split(".")[0], p4.split(".")[0])

    def test_sse_last_event_id_resumes_exactly(self):
        port = self.sup.http_port
        sse = SseReader(port, ["/sse"])
        self.assertIn("text/event-stream", sse.head)
        self.assertEqual(sse.event()["event"], "state")
        positions = [publish(port, "/sse", i)[1]["position"] for i in range(3)]
        events = [sse.event() for _ in range(3)]
        self.assertEqual([json.loads(e["data"])["position"] for e in events], positions)
        self.assertTrue(all(e["event"] == "message" for e in events))
        sse.close()
        missed = [publish(port, "/sse", 10 + i)[1]["position"] for i in range(4)]
        again = SseReader(port, ["/sse"], last_event_id=events[1]["id"])
        state = again.event()
        self.assertTrue(json.loads(state["data"])["recovered"])
        resumed = [json.loads(again.event()["data"])["position"] for _ in range(5)]
        self.assertEqual(resumed, positions[2:] + missed)
        live = publish(port, "/sse", "live")[1]["position"]
        self.assertEqual(json.loads(again.event()["data"])["position"], live)
        again.close()

    def test_sse_bad_last_event_id(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sup.http_port, timeout=10)
        conn.request("GET", "/v1/sse?channel=/x", headers={"Last-Event-ID": "forged"})
        r = conn.getresponse()
        self.assertEqual(r.status, 400)
        self.assertEqual(json.loads(r.read())["error"]["code"], "bad_request")
        conn.close()


class WorkerDeathTest(unittest.TestCase):
    def test_poll_held_across_kill_9_loses_nothing(self):
        sup = Supervisor(workers=2, dispatch="round-robin", gateway_extra='poll_timeout = "20s"\n').start()
        try:
            port = sup.http_port
            _, r = poll(port, ["/k"])
            result = {}

            def held():
                try:
                    result["r"] = poll(port, ["/k"], r["cursor"])
                except (ConnectionError, http.client.HTTPException) as e:
                    result["error"] = e

            t = threading.Thread(target=held)
            t.start()

            def holder():
                for w in sup.status()["workers"]:
                    if w["held_polls"] == 1:
                        return w
            w = wait_for(holder, 5, what="the worker holding the poll")
            os.kill(w["pid"], signal.SIGKILL)
            t.join(10)
            self.assertIn("error", result, "the held poll's connection died with its worker")
            sent = [publish(port, "/k", i)[1]["position"] for i in range(3)]
            _, again = poll(port, ["/k"], r["cursor"])
            self.assertTrue(again["recovered"])
            self.assertEqual([m["position"] for m in again["messages"]], sent)
        finally:
            sup.cleanup()


class CacheTest(unittest.TestCase):
    def test_sweep_drops_idle_sessions_and_hits_are_counted(self):
        sup = Supervisor(workers=1, gateway_extra='session_ttl = "1s"\n').start()
        try:
            port = sup.http_port
            _, r = poll(port, ["/c"])
            publish(port, "/c", 1)
            _, r2 = poll(port, ["/c"], r["cursor"])
            publish(port, "/c", 2)
            _, r3 = poll(port, ["/c"], r2["cursor"])
            self.assertEqual([m["data"] for m in r3["messages"]], [2])
            # The first poll made no entry; the second made one (a miss); the third hit it.
            w = wait_for(lambda: (lambda w: w if w["poll_cache_hits"] >= 1 else None)(sup.status()["workers"][0]), 5,
                         what="cache hits counted")
            self.assertGreaterEqual(w["poll_sessions"], 1)
            wait_for(lambda: sup.status()["workers"][0]["poll_sessions"] == 0, 6,
                     what="the idle session swept after session_ttl")
            self.assertGreaterEqual(sup.status()["workers"][0]["poll_evictions"], 1)
            # Swept is not lost: the cursor still resumes, from the hub's history.
            publish(port, "/c", 3)
            _, r4 = poll(port, ["/c"], r3["cursor"])
            self.assertEqual([m["data"] for m in r4["messages"]], [3])
            wait_for(lambda: sup.status()["workers"][0]["poll_cache_misses"] >= 1, 5, what="the miss counted")
            w = sup.status()["workers"][0]
            text = sup.ctl("metrics").stdout
            self.assertEqual(metrics_problems(text), [])
            # The series carry what the test did, as status reported it a moment before
            # (counters only grow), and the gauges are there too.
            for name, key in [("dingo_worker_poll_cache_hits_total", "poll_cache_hits"),
                              ("dingo_worker_poll_cache_misses_total", "poll_cache_misses"),
                              ("dingo_worker_poll_cache_evictions_total", "poll_evictions"),
                              ("dingo_worker_polls_total", "polls")]:
                found = series(text, name, worker=0)
                self.assertEqual(len(found), 1, name)
                self.assertGreaterEqual(found[0][1], max(1, w[key]), name)
            for name in ["dingo_worker_held_polls", "dingo_worker_poll_sessions", "dingo_worker_sse_streams"]:
                self.assertEqual(len(series(text, name, worker=0)), 1, name)
        finally:
            sup.cleanup()

    def test_a_resume_that_was_not_exact_says_so_until_the_client_heard_it(self):
        """A poll whose cursor is older than history is answered recovered:false. A
        client whose answer was lost sends the same cursor again, and the cached entry
        has live messages by then: the retry must still say recovered:false, and carry
        none of that channel's messages (its position is after them, for the client to
        refetch its state as of it; they would come twice). Only a poll with the
        position it was given goes back to recovered:true."""
        sup = Supervisor(workers=1, extra="[history]\nsize = 3\n").start()
        try:
            port = sup.http_port
            _, first = poll(port, ["/lost"])
            for i in range(6):
                publish(port, "/lost", i)
            status, told = poll(port, ["/lost"], first["cursor"])
            self.assertEqual((status, told["recovered"], told["messages"]), (200, False, []), told)
            self.assertEqual(seq(told["positions"]["/lost"]), 6, told)
            publish(port, "/lost", 6)
            publish(port, "/lost", 7)
            # The answer above never reached the client: it retries with its old cursor.
            status, again = poll(port, ["/lost"], first["cursor"])
            self.assertEqual((status, again["recovered"], again["messages"]), (200, False, []), again)
            # At 8, or before if the worker had not been sent 7 and 8 yet.
            at = seq(again["positions"]["/lost"])
            self.assertIn(at, (6, 7, 8), again)
            # It heard that one: from its position on, every message, exactly (the
            # message published as N is at position N + 1).
            publish(port, "/lost", 8)
            status, on = poll(port, ["/lost"], again["cursor"])
            self.assertEqual((status, on["recovered"]), (200, True), on)
            self.assertEqual([m["data"] for m in on["messages"]], list(range(at, 9)), on)
            self.assertEqual(seq(on["positions"]["/lost"]), 9, on)
            w = wait_for(lambda: (lambda w: w if w["poll_cache_hits"] >= 2 else None)(sup.status()["workers"][0]), 5,
                         what="the retry and the next poll served from the cached entry")
            self.assertEqual(w["poll_cache_misses"], 1, w)
        finally:
            sup.cleanup()

    @release_only("ASan's shadow memory and quarantine make RSS no measure of the session cache")
    def test_memory_stays_bounded_under_10000_idle_sessions(self):
        # Resumed polls make entries (first polls make none); a 1 ms hold answers each.
        sup = Supervisor(workers=1, gateway_extra='session_cache_entries = 2000\npoll_timeout = "1ms"\n').start()
        try:
            port = sup.http_port
            pid = sup.worker_pids()[0]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            cursors = []
            for i in range(50):
                conn.request("GET", f"/v1/poll?channel=/idle/{i}")
                cursors.append(json.loads(conn.getresponse().read())["cursor"])
            rss0 = rss_kb(pid)
            for i in range(10000):
                # A cursor of another session each time: every poll a new entry.
                first = cursors[i % 50] if i < 50 else None
                if first is None:
                    conn.request("GET", f"/v1/poll?channel=/idle/{i % 50}")
                    first = json.loads(conn.getresponse().read())["cursor"]
                conn.request("GET", f"/v1/poll?channel=/idle/{i % 50}&cursor={first}")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.read()
            conn.close()
            w = wait_for(lambda: (lambda w: w if w["polls"] >= 19950 else None)(sup.status()["workers"][0]), 5,
                         what="stats")
            self.assertLessEqual(w["poll_sessions"], 2000)
            self.assertGreaterEqual(w["poll_evictions"], 8000)
            grown = rss_kb(pid) - rss0
            print(f"\n10,000 sessions (2,000 kept): worker RSS grew {grown} KiB")
            self.assertLess(grown, 32 * 1024)
        finally:
            sup.cleanup()


class DrainTest(unittest.TestCase):
    def test_drain_answers_held_polls_and_ends_sse_with_reconnect(self):
        sup = Supervisor(workers=1, gateway_extra='poll_timeout = "30s"\n').start()
        try:
            port = sup.http_port
            _, r = poll(port, ["/dr"])
            sse = SseReader(port, ["/dr"])
            self.assertEqual(sse.event()["event"], "state")
            result = {}
            t = threading.Thread(target=lambda: result.setdefault("r", poll(port, ["/dr"], r["cursor"])))
            t.start()
            wait_for(lambda: sup.status()["workers"][0]["held_polls"] == 1, 5, what="the held poll")
            t0 = time.monotonic()
            sup.proc.send_signal(signal.SIGTERM)
            t.join(10)
            self.assertLess(time.monotonic() - t0, 5)
            status, body = result["r"]
            self.assertEqual(status, 200)
            self.assertEqual(body["messages"], [])
            # Nothing new: every position where it was (the epoch may be spelled anew:
            # the first poll's positions were of a channel that did not exist yet).
            self.assertTrue(body["recovered"])
            self.assertEqual([p.split(".")[1] for p in body["positions"].values()],
                             [p.split(".")[1] for p in r["positions"].values()])
            e = sse.event()
            self.assertEqual(e["event"], "reconnect")
            self.assertIn("after_ms", json.loads(e["data"]))
            sse.close()
            sup.proc.wait(timeout=10)
        finally:
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
