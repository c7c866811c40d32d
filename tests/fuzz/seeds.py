#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/ (checked in; run again after a format
changes): small valid inputs of every kind each target reads, and a few near misses.
The binary formats are built here by the rules of their headers (core/WebSocket.h,
core/HubWire.h, core/Ipc.h, core/Cursor.h); the fuzzers check every seed that decodes
against the real encoders (a decoded cursor or hub frame must encode back the same).

    tests/fuzz/seeds.py [CORPUS_DIR]
"""
import hashlib
import hmac
import os
import shutil
import struct
import sys
from base64 import urlsafe_b64encode

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
SOURCE = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    folder = os.path.join(OUT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---- ws_frame: [max_message selector][chunking][client frames] -----------------------
def ws(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d", rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_seed(name, frames, limit=12, chunk=5):
    write("ws_frame", name, bytes([limit, chunk]) + b"".join(frames))


ws_seed("text", [ws(1, '{"op":"ping","id":1}')])
ws_seed("binary", [ws(2, bytes(range(40)))])
ws_seed("fragmented-with-ping", [ws(1, "héll", fin=False), ws(9, "p"), ws(0, "o wörld")])
ws_seed("close", [ws(8, struct.pack(">H", 1000) + b"bye")])
ws_seed("close-empty", [ws(8, b"")])
ws_seed("pong", [ws(10, "x" * 125)])
ws_seed("len16", [ws(1, "a" * 300)], chunk=0)
ws_seed("len64", [ws(2, b"\0" * 70000)], limit=12, chunk=16)
ws_seed("too-big", [ws(1, "a" * 200)], limit=1)
ws_seed("bad-utf8", [ws(1, b"ok \xc3\x28")])
ws_seed("split-utf8", [ws(1, b"\xe2\x82", fin=False), ws(0, b"\xac")], chunk=1)
ws_seed("unmasked", [b"\x81\x02hi"])
ws_seed("rsv", [ws(1, "x", rsv=0x40)])
ws_seed("bad-close-code", [ws(8, struct.pack(">H", 1005))])

# ---- ws_command: JSON text a client sends --------------------------------------------
for name, cmd in {
    "ping": '{"op":"ping","id":1}',
    "subscribe": '{"op":"subscribe","id":"a","channel":"/news/eu"}',
    "subscribe-since": '{"op":"subscribe","id":2,"channel":"/c","since":"k3j9x2.41"}',
    "unsubscribe": '{"op":"unsubscribe","id":3,"channel":"/c"}',
    "publish": '{"op":"publish","id":4,"channel":"/c","data":{"t":1.5e3,"s":"\\u00e9\\ud83d\\ude00","a":[true,null,-0]}}',
    "bad-id": '{"op":"ping","id":{"x":1}}',
    "not-object": '[1,2,3]',
    "nested": '{"op":"publish","channel":"/c","data":' + "[" * 64 + "]" * 64 + "}",
}.items():
    write("ws_command", name, cmd)

# ---- cursor: [mode][token | body to sign | position] ---------------------------------
SECRET = b"fuzz cursor secret"  # CursorFuzz.cpp's kSecret


def cursor_body(session, positions, version=2):
    count = struct.pack("<H", len(positions)) if version == 2 else bytes([len(positions)])
    body = bytes([version]) + struct.pack("<Q", session) + count
    for name, epoch, seq in positions:
        body += bytes([len(name)]) + name + bytes([len(epoch)]) + epoch + struct.pack("<Q", seq)
    return body


def cursor_token(body):
    raw = body + hmac.new(SECRET, body, hashlib.sha256).digest()[:12]
    return urlsafe_b64encode(raw).rstrip(b"=")


one = cursor_body(7, [(b"/a", b"e1", 3)])
many = cursor_body(2**63, [(b"/ch/%d" % i, b"k3j9x2", i * 1000) for i in range(20)])
write("cursor", "token-one", b"\0" + cursor_token(one))
write("cursor", "token-many", b"\0" + cursor_token(many))
write("cursor", "token-empty", b"\0" + cursor_token(cursor_body(1, [])))
write("cursor", "token-v1", b"\0" + cursor_token(cursor_body(7, [(b"/a", b"e1", 3)], version=1)))
write("cursor", "token-300", b"\0" + cursor_token(cursor_body(3, [(b"/c%d" % i, b"e", i) for i in range(300)])))
write("cursor", "body-one", b"\1" + one)
write("cursor", "body-bad-channel", b"\1" + cursor_body(1, [(b"no-slash", b"e", 1)]))
write("cursor", "body-trailing", b"\1" + one + b"x")
write("cursor", "position", b"\2k3j9x2.41")
write("cursor", "position-max", b"\2" + b"z" * 32 + b".18446744073709551615")
write("cursor", "position-overflow", b"\2abc.18446744073709551616")

# ---- hub_wire: a stream of frames --------------------------------------------------
def s(b):
    return struct.pack("<I", len(b)) + b


def pos(epoch, seq):
    return s(epoch) + struct.pack("<Q", seq)


def frame(t, body):
    return struct.pack("<IB", len(body) + 1, t) + body


Q = lambda v: struct.pack("<Q", v)  # noqa: E731
hub = {
    "subscribe": frame(1, Q(1) + s(b"/c") + b"\0"),
    "subscribe-since": frame(1, Q(2) + s(b"/c") + b"\1" + pos(b"e1", 5)),
    "unsubscribe": frame(2, s(b"/c")),
    "publish": frame(3, Q(3) + s(b"/c") + s(b'{"a":1}')),
    "history": frame(4, Q(4) + s(b"/c") + b"\1" + pos(b"e1", 0) + struct.pack("<I", 100)),
    "info": frame(5, Q(5) + s(b"/c")),
    "catchup": frame(10, Q(1) + pos(b"e1", 7) + b"\1" + struct.pack("<I", 2) + Q(6) + s(b"1") + Q(7) + s(b"2")),
    "publish-reply": frame(11, Q(3) + pos(b"e1", 8)),
    "info-reply": frame(12, Q(5) + pos(b"e1", 8) + Q(3)),
    "error": frame(13, Q(9) + s(b"no such channel")),
    "message": frame(14, s(b"/c") + pos(b"e1", 9) + s(b'"hi"')),
    "catchup-count-lies": frame(10, Q(1) + pos(b"e1", 7) + b"\0" + struct.pack("<I", 0xFFFFFFFF)),
    "too-long": struct.pack("<I", (256 << 20) + 1) + b"\3",
}
for name, data in hub.items():
    write("hub_wire", name, data)
write("hub_wire", "stream", b"".join(hub[k] for k in ("subscribe", "catchup", "message", "publish", "publish-reply")))

# ---- ipc: [fd count][datagram: magic, version, type, payload] -----------------------
def ipc(t, payload=b"", fds=0, magic=0x44494E47, version=1):
    return bytes([fds]) + struct.pack("<IHH", magic, version, t) + payload


handoff = struct.pack("<HBBIq", 0, 1, 0, 16, 1_700_000_000_000_000_000)
handoff += struct.pack("<HH4s", 2, 0x1F90, bytes([127, 0, 0, 1])).ljust(128, b"\0")  # sockaddr_storage
write("ipc", "handoff", ipc(1, handoff, fds=1))
write("ipc", "handoff-no-fd", ipc(1, handoff))
write("ipc", "ticket-keys", ipc(2, b"\x11" * 80))
write("ipc", "drain", ipc(3, struct.pack("<q", 30000)))
write("ipc", "hello", ipc(100, b'{"pid":1234,"worker":0,"generation":1}'))
write("ipc", "stats", ipc(101, b'{"accepted":5,"connections":2,"requests":9,"bytes_in":100}'))
write("ipc", "two-fds", ipc(101, b"{}", fds=2))
write("ipc", "bad-magic", ipc(100, b"{}", magic=0x474E4944))
write("ipc", "short", b"\0DIN")

# ---- config: TOML ------------------------------------------------------------------
shutil.rmtree(os.path.join(OUT, "config"), ignore_errors=True)
with open(os.path.join(SOURCE, "packaging", "dingo.toml")) as f:
    write("config", "packaged", f.read())
write("config", "full", """[supervisor]
workers = 2
dispatch = "ip-hash"
drain_timeout = "30s"
restart_backoff = "100ms"
restart_backoff_max = "30s"
stable_after = "1m"

[[listen]]
address = "127.0.0.1:8080"
backlog = 1024

[[listen]]
address = "[::1]:8443"
tls = true

[tls]
cert = "cert.pem"
key = "key.pem"
ticket_rotation = "1h"

[gateway]
max_header_bytes = "16KiB"
max_body_bytes = "1MiB"
max_message_size = 65536
max_channels = 128
ping_interval = "25s"
client_publish = true
publish_token = "secret"
cursor_secret = "k"

[history]
size = 100
max_bytes = "1MiB"
ttl = "5m"

[watchdog]
interval = "1s"
timeout = "3s"
failures = 3

[bus]
engine = "local"

[nodes]
version = 3
ttl = "10m"

[admin]
address = "127.0.0.1:9180"

[log]
level = "debug"
format = "json"
""")
write("config", "empty", "")
write("config", "bad-type", "[supervisor]\nworkers = \"two\"\n")
write("config", "bad-syntax", "[supervisor\nworkers = 2\n")
write("config", "unknown-key", "[gateway]\nmax_everything = 1\n")
write("config", "nan", "[watchdog]\nmax_kill_fraction = nan\n")

# ---- http_request: [piece size][bytes of one connection] ----------------------------
http = {
    "get": b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    "publish": b"POST /v1/publish/c?token=x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
               b"Content-Length: 7\r\n\r\n{\"a\":1}",
    "chunked": b"POST /v1/publish/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\n{\"a\r\n4;ext=1\r\n\":1}\r\n0\r\nTrailer: x\r\n\r\n",
    "keep-alive": b"GET /v1/history/c HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/poll?channel=/c HTTP/1.1\r\nHost: a\r\n"
                  b"Connection: close\r\n\r\n",
    "ws-upgrade": b"GET /v1/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "http10": b"GET /v1/sse?channel=/c HTTP/1.0\r\n\r\n",
    "smuggle": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
               b"POST /v1/publish/c HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}",
    "two-lengths": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "garbage-head": b"HELLO WORLD X\r\n\r\n",
    "leading-crlf": b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute-form": b"GET http://a/v1/history/c HTTP/1.1\r\nHost: a\r\n\r\n",
    "folded-header": b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n",
}
for i, (name, data) in enumerate(http.items()):
    write("http_request", name, bytes([i * 7 % 64]) + data)

# ---- nodes: GET /v1/nodes bodies ---------------------------------------------------
nodes = {
    "list": '{"version":12,"ttl_s":600,"nodes":[{"host":"192.0.2.1","port":443,"tls":true},'
            '{"host":"2001:db8::1","port":8443},{"host":"198.51.100.7","port":80,"tls":false}]}',
    "empty": '{"version":1,"ttl_s":60,"nodes":[]}',
    "names-and-junk": '{"version":2,"ttl_s":-5,"nodes":[{"host":"example.com","port":443},{"host":"1.2.3.4",'
                      '"port":70000},{"host":"1.2.3.4","port":0},7,null,{"host":"[::1]","port":1}]}',
    "not-a-list": '{"version":"1","nodes":{}}',
}
for name, body in nodes.items():
    write("nodes", name, body)

# ---- store_rows: FuzzedDataProvider bytes (any bytes are rows of some kind) ----------
import random  # noqa: E402

rng = random.Random(12)
for i in range(6):
    write("store_rows", "rows-%d" % i, bytes(rng.randrange(256) for _ in range(64 + 48 * i)))
write("store_rows", "texty", b"nodes_version\x02abc\x02123\x021.2.3.4\x00\x02" * 8)

# ---- token: a JWT (HS256 with the target's secret, 40 x "s"), or "c" + claims to sign --
def jwt_hs256(header, claims, secret=b"s" * 40):
    def b64(d):
        return urlsafe_b64encode(d.encode() if isinstance(d, str) else d).rstrip(b"=")
    signing = b64(header) + b"." + b64(claims)
    return signing + b"." + b64(hmac.new(secret, signing, hashlib.sha256).digest())


good = '{"sub":"alice","exp":99999999999,"iss":"iss","aud":["x","aud"],' \
       '"channels":{"subscribe":["/rooms/*","/users/{sub}/*"],"publish":["/users/{sub}"]}}'
write("token", "hs256", jwt_hs256('{"alg":"HS256","typ":"JWT"}', good))
write("token", "hs256-other-secret", jwt_hs256('{"alg":"HS256"}', good, secret=b"x" * 40))
write("token", "alg-none", jwt_hs256('{"alg":"none"}', good)[:-43] + b"AA")
write("token", "es256-unsigned", jwt_hs256('{"alg":"ES256"}', good))
write("token", "claims", "c" + good)
write("token", "claims-bad-pattern", 'c{"exp":1,"iss":"iss","aud":"aud","channels":{"subscribe":["/a/*/b"]}}')
write("token", "claims-no-exp", 'c{"sub":"bob","iss":"iss","aud":"aud"}')
write("token", "claims-nbf", 'c{"sub":"bob","exp":2e9,"nbf":1.5e9,"iss":"iss","aud":"aud"}')
write("token", "garbage", "a.b.c")
