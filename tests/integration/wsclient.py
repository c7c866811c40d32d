"""A small blocking WebSocket client for tests that need to send exactly the bytes they
choose (bad frames, fragments, bad UTF-8). Tests of ordinary use drive the gateway with
Debian's python3-websockets instead (test_pubsub.WebSocketsLibraryTest)."""
import base64
import json
import os
import socket
import ssl
import struct
import time

TEXT, BINARY, CLOSE, PING, PONG, CONT = 1, 2, 8, 9, 10, 0


class Closed(Exception):
    """The server closed the connection (`code` from its close frame, or None)."""

    def __init__(self, code=None, reason=b""):
        super().__init__(f"closed: {code} {reason!r}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(self, port, host="127.0.0.1", tls_ca=None, timeout=10, source=None, path="/v1/ws"):
        raw = socket.create_connection((host, port), timeout=timeout,
                                       source_address=(source, 0) if source else None)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.buf = b""
        self.next_id = 1
        self.pushed = []  # server pushes ({"event":...}) seen while waiting for replies
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed()
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        if " 101 " not in self.status_line:
            raise AssertionError(f"upgrade refused: {head!r} {self.buf!r}")

    # ---- frames ----
    def send_frame(self, opcode, payload, fin=True, mask=True, rsv=0, length=None):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        m = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, m | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, m | 126, n)
        else:
            head = struct.pack("!BBQ", b0, m | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, text):
        self.send_frame(TEXT, text)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed()
            self.buf += chunk

    def recv_frame(self):
        """(opcode, payload) of the next frame; raises Closed on a close frame or EOF."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "server frames are never masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
        opcode = b0 & 0x0F
        if opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise Closed(code, payload[2:])
        return opcode, payload

    def recv_json(self):
        """The next text frame as JSON, answering pings on the way."""
        while True:
            op, payload = self.recv_frame()
            if op == PING:
                self.send_frame(PONG, payload)
                continue
            assert op == TEXT, (op, payload)
            return json.loads(payload)

    def expect_close(self, timeout=5):
        """Reads until the server's close frame; returns its code."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.recv_frame()
        except Closed as c:
            return c.code

    # ---- protocol ----
    def command(self, op, **fields):
        """Sends one command and returns its reply; pushes that arrive first go to .pushed."""
        cid = self.next_id
        self.next_id += 1
        self.send_text(json.dumps({"id": cid, "op": op, **fields}))
        while True:
            m = self.recv_json()
            if m.get("id") == cid:
                return m
            self.pushed.append(m)

    def next_message(self, timeout=5):
        """The next pushed message (already buffered ones first)."""
        if self.pushed:
            return self.pushed.pop(0)
        self.sock.settimeout(timeout)
        return self.recv_json()

    def close(self):
        try:
            self.send_frame(CLOSE, struct.pack("!H", 1000))
            self.expect_close(timeout=2)
        except (Closed, OSError):
            pass
        finally:
            self.sock.close()


def wait_closed(sock, timeout=5):
    """True when the peer closes the TCP connection within `timeout`."""
    end = time.time() + timeout
    sock.settimeout(0.2)
    while time.time() < end:
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False
