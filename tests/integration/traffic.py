"""Clients that keep going through faults and record what they see, for checker.py.

- `Publisher`: publishes numbered messages to one channel over REST at a rate; each 200
  is logged as acknowledged with its position; failures are counted by kind.
- `WsSubscriber`, `SseSubscriber`, `PollSubscriber`: one channel each, over their
  transport. Every answer and message goes to the Recorder; when the connection is lost
  or the server asks for a reconnect they reconnect with the position they have
  (WebSocket `since`, SSE `Last-Event-ID`, the poll cursor), to the same host first,
  then to the others in turn, with a short jittered backoff.

Endpoints are (address, port) pairs; `move_to(i)` makes a subscriber drop its
connection and resume on endpoint i. Each client is a daemon thread; `stop()` ends it
within a second or so. `quiet_s` bounds silence on a connection: the servers in these
tests ping (WebSocket), send heartbeats (SSE) or answer (poll) well within it, so a
connection silent for longer is taken as dead (a host cut off) and replaced.
"""
import http.client
import json
import random
import socket
import threading
import time
import urllib.parse

from wsclient import Closed, WsClient


def request(endpoint, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection(endpoint[0], endpoint[1], timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Connection": "close", **(headers or {})})
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw
    finally:
        conn.close()


class Client(threading.Thread):
    def __init__(self, name, recorder, endpoints, channel):
        super().__init__(daemon=True, name=name)
        self.recorder = recorder
        self.endpoints = list(endpoints)
        self.channel = channel
        self.target = 0
        self.halt = threading.Event()
        self.errors = 0

    def stop(self):
        self.halt.set()

    def pause(self, attempt):
        self.halt.wait(min(2.0, 0.1 * 2 ** attempt) * random.uniform(0.5, 1.0))


class Publisher(Client):
    def __init__(self, name, recorder, endpoints, channel, rate, token=None):
        super().__init__(name, recorder, endpoints, channel)
        self.interval = 1.0 / rate
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.sent = 0

    def run(self):
        path = "/v1/publish" + urllib.parse.quote(self.channel)
        n = 0
        next_at = time.monotonic()
        while not self.halt.is_set():
            n += 1
            key = f"{self.name}-{n}"
            try:
                status, body = request(self.endpoints[self.target], "POST", path, {"k": key}, self.headers, timeout=5)
                if status == 200:
                    self.recorder.ack(self.channel, body["position"], key)
                else:
                    self.recorder.publish_failed(str(status))
            except (OSError, http.client.HTTPException) as e:
                self.recorder.publish_failed(type(e).__name__)
            self.sent += 1
            next_at += self.interval
            self.halt.wait(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic() - 1)  # no burst to catch up after an outage


class Subscriber(Client):
    """The reconnect loop; a transport implements session(endpoint) -> None."""

    def __init__(self, name, recorder, endpoints, channel, quiet_s=10.0):
        super().__init__(name, recorder, endpoints, channel)
        self.quiet_s = quiet_s
        self.position = None  # the last position (WebSocket) or cursor (SSE, poll) it has
        self.ready = threading.Event()  # set at the first answer
        self.sock = None
        self.moved = None
        self.after_error = False

    def move_to(self, index):
        self.moved = index
        self.drop()

    def drop(self):
        s = self.sock
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        super().stop()
        self.drop()

    def run(self):
        attempt = 0
        while not self.halt.is_set():
            if self.moved is not None:
                self.target, self.moved = self.moved, None
            started = time.monotonic()
            try:
                self.session(self.endpoints[self.target])
                why = "ended"
            except Closed as e:
                why = f"closed {e.code}"
            except (OSError, EOFError, ValueError, http.client.HTTPException, AssertionError) as e:
                why = type(e).__name__
            finally:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
            if self.halt.is_set():
                return
            self.recorder.reconnect(self.name, self.channel, why)
            attempt = 0 if time.monotonic() - started > 5 else attempt + 1
            if attempt >= 3 and self.moved is None:  # this host does not answer: try the next
                self.target = (self.target + 1) % len(self.endpoints)
            self.pause(attempt)

    def answer(self, position, recovered, resumed):
        self.recorder.subscribed(self.name, self.channel, position, recovered, resumed)
        self.ready.set()


class WsSubscriber(Subscriber):
    def session(self, endpoint):
        ws = WsClient(endpoint[1], host=endpoint[0], timeout=5)
        self.sock = ws.sock
        if self.halt.is_set():
            return
        fields = {"channel": self.channel}
        if self.position:
            fields["since"] = self.position
        r = ws.command("subscribe", **fields)
        if not r.get("ok"):
            raise ValueError(f"subscribe refused: {r}")
        self.answer(r["position"], r["recovered"], "since" in fields)
        for m in r["messages"]:
            self.recorder.message(self.name, self.channel, m["position"], m["data"]["k"])
        self.position = r["position"]
        ws.sock.settimeout(self.quiet_s)
        while not self.halt.is_set():
            m = ws.next_message(timeout=self.quiet_s)
            if m.get("event") == "message":
                self.recorder.message(self.name, self.channel, m["position"], m["data"]["k"])
                self.position = m["position"]
            elif m.get("event") == "reconnect":
                return


class SseSubscriber(Subscriber):
    def session(self, endpoint):
        q = urllib.parse.urlencode([("channel", self.channel)])
        self.sock = socket.create_connection(endpoint, timeout=5)
        extra = f"Last-Event-ID: {self.position}\r\n" if self.position else ""
        self.sock.sendall(f"GET /v1/sse?{q} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        self.sock.settimeout(self.quiet_s)
        buf, body = b"", b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        head, buf = buf.split(b"\r\n\r\n", 1)
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise ValueError(f"sse refused: {head[:80]!r}")
        resumed = self.position is not None
        while not self.halt.is_set():
            # De-chunk, then split events.
            while b"\r\n" in buf:
                size_line, rest = buf.split(b"\r\n", 1)
                n = int(size_line, 16)
                if len(rest) < n + 2:
                    break
                if n == 0:
                    return
                body += rest[:n]
                buf = rest[n + 2:]
            while b"\n\n" in body:
                block, body = body.split(b"\n\n", 1)
                ev = {}
                for line in block.decode().split("\n"):
                    if line and not line.startswith(":") and ":" in line:
                        k, _, v = line.partition(":")
                        ev[k] = v[1:] if v.startswith(" ") else v
                kind = ev.get("event")
                if kind == "state":
                    d = json.loads(ev["data"])
                    self.answer(d["positions"][self.channel], d["recovered"], resumed)
                elif kind == "message":
                    d = json.loads(ev["data"])
                    self.recorder.message(self.name, self.channel, d["position"], d["data"]["k"])
                elif kind == "reconnect":
                    return
                if "id" in ev and ev["id"]:
                    self.position = ev["id"]
            buf += self._recv()

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("sse stream closed")
        return chunk


class PollSubscriber(Subscriber):
    def session(self, endpoint):
        resumed = self.position is not None
        while not self.halt.is_set() and self.moved is None:
            q = [("channel", self.channel)] + ([("cursor", self.position)] if self.position else [])
            conn = http.client.HTTPConnection(endpoint[0], endpoint[1], timeout=self.quiet_s)
            try:
                conn.connect()
                self.sock = conn.sock
                conn.request("GET", "/v1/poll?" + urllib.parse.urlencode(q))
                r = conn.getresponse()
                raw = r.read()
            finally:
                self.sock = None
                conn.close()
            if r.status != 200:
                raise ValueError(f"poll answered {r.status}")
            d = json.loads(raw)
            if not resumed or not d["recovered"] or self.after_error:
                # A fresh start, a resume after a lost connection, or one that could not
                # be exact (then the cursor is at the current position).
                self.answer(d["positions"][self.channel], d["recovered"], resumed)
            self.after_error = False
            for m in d["messages"]:
                self.recorder.message(self.name, self.channel, m["position"], m["data"]["k"])
            self.position = d["cursor"]
            resumed = True

    def pause(self, attempt):
        self.after_error = True
        super().pause(attempt)
