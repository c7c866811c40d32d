"""JWT auth ([auth], docs/auth.md) over WebSocket, SSE, long-polling and REST.

Tokens are minted here by an independent library (python3-jwt on python3-cryptography),
with an EC P-256 and an RSA 2048 key pair made for this run; the gateway is given only the
public keys. Real binaries on loopback, two workers under round-robin."""
import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import Supervisor, binary, http_get, metrics_problems, series, wait_for
from test_polling import SseReader
from test_reload import reloaded
from wsclient import PING, PONG, TEXT, Closed, WsClient

ES_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_ES_KEY = ec.generate_private_key(ec.SECP256R1())  # never configured


def pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


ES_PUB, RSA_PUB = pem(ES_KEY), pem(RSA_KEY)
PUBLISH_TOKEN = "static-publish-token-0123456789"


def mint(sub="alice", subscribe=(), publish=(), ttl=60, key="es", aud="dingo", exp=None, **claims):
    """A signed token; `exp` overrides `ttl`, a claim given as None is left out."""
    payload = {"sub": sub, "aud": aud, "exp": exp if exp is not None else int(time.time()) + ttl,
               "channels": {"subscribe": list(subscribe), "publish": list(publish)}}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    alg, k = {"es": ("ES256", ES_KEY), "rsa": ("RS256", RSA_KEY), "other": ("ES256", OTHER_ES_KEY)}[key]
    return jwt.encode(payload, k, algorithm=alg)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def by_hand(header, payload, sign=lambda signing_input: b""):
    """A token built without the library (what it refuses to make: alg confusion)."""
    si = b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())
    return si + "." + b64u(sign(si.encode()))


def claims(sub="alice", ttl=60, **more):
    return {"sub": sub, "aud": "dingo", "exp": int(time.time()) + ttl,
            "channels": {"subscribe": ["/*"], "publish": ["/*"]}, **more}


def auth_section(keys=("es.pub", "rsa.pub"), required=True, more=""):
    return ("[auth]\n"
            f"required = {'true' if required else 'false'}\n"
            "jwt_public_keys = [" + ", ".join(f'"{k}"' for k in keys) + "]\n"
            'leeway = "0s"\n'
            'audience = "dingo"\n'
            'expiring_notice = "2s"\n' + more)


def start_supervisor(workers=2, gateway_extra="", **auth):
    sup = Supervisor(workers=workers, dispatch="round-robin", tls=False,
                     gateway_extra=gateway_extra, extra=auth_section(**auth))
    for name, data in (("es.pub", ES_PUB), ("rsa.pub", RSA_PUB)):
        with open(os.path.join(sup.dir, name), "wb") as f:
            f.write(data)
    try:
        return sup.start()
    except BaseException:
        sup.cleanup()
        raise


# ---- transports -----------------------------------------------------------------------

def rest(port, method, path, token=None, body=None):
    """One request on a fresh connection: (status, parsed body or None, lower-cased headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Connection": "close"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def poll(port, channels, cursor=None, token=None, query_token=None, timeout=30):
    q = [("channel", c) for c in channels]
    if cursor:
        q.append(("cursor", cursor))
    if query_token:
        q.append(("token", query_token))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request("GET", "/v1/poll?" + urllib.parse.urlencode(q), headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


class Sse(SseReader):
    """test_polling's SseReader with a token (header or query) and a status: on a refusal,
    `.status`, `.headers` and `.error` (the parsed JSON body) instead of a stream."""

    def __init__(self, port, channels, token=None, query_token=None, last_event_id=None):
        q = [("channel", c) for c in channels] + ([("token", query_token)] if query_token else [])
        extra = f"Authorization: Bearer {token}\r\n" if token else ""
        extra += f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(f"GET /v1/sse?{urllib.parse.urlencode(q)} HTTP/1.1\r\nHost: x\r\n"
                          f"Connection: close\r\n{extra}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.head = head.decode()
        lines = self.head.split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        self.body = b""
        self.ended = False
        self.error = None
        if self.status != 200:
            length = self.headers.get("content-length")
            try:
                while length is None or len(self.buf) < int(length):
                    self.buf += self._recv()
            except (EOFError, ConnectionError):
                pass
            if "chunked" in self.headers.get("transfer-encoding", ""):
                self._dechunk()
                raw = self.body
            else:
                raw = self.buf[:int(length)] if length is not None else self.buf
            self.error = json.loads(raw)
            self.sock.close()


def read_until_close(c, timeout=5):
    """Reads a WebSocket until the server's close: (code, reason, JSON messages before it)."""
    deadline = time.monotonic() + timeout
    seen = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no close within {timeout}s (saw {seen})")
            c.sock.settimeout(left)
            op, payload = c.recv_frame()
            if op == PING:
                c.send_frame(PONG, payload)
            elif op == TEXT:
                seen.append(json.loads(payload))
    except Closed as e:
        return e.code, e.reason, seen
    except socket.timeout:
        raise AssertionError(f"no close within {timeout}s (saw {seen})")


class AuthCase(unittest.TestCase):
    sup = None

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def ws(self, token=None, query_token=None):
        """A WebSocket client, authenticated with `token` by the auth command when given."""
        path = "/v1/ws" + (f"?token={urllib.parse.quote(query_token)}" if query_token else "")
        c = WsClient(self.sup.http_port, path=path)
        self.clients.append(c)
        if token:
            r = c.command("auth", token=token)
            self.assertTrue(r.get("ok"), r)
        return c

    def sse(self, *args, **kw):
        s = Sse(self.sup.http_port, *args, **kw)
        self.clients.append(s)
        return s

    def assertError(self, reply, code):
        self.assertIs(reply.get("ok"), False, reply)
        self.assertEqual(reply["error"]["code"], code, reply)

    def assertHttpError(self, status, body, headers, code):
        want = {"unauthorized": 401, "forbidden": 403}[code]
        self.assertEqual((status, body["error"]["code"]), (want, code), body)
        if want == 401:
            self.assertTrue(headers.get("www-authenticate", "").startswith("Bearer"), headers)

    def assertRefusedThenClosed(self, c, reply, timeout=5):
        """An `unauthorized` reply, then close 4001."""
        self.assertError(reply, "unauthorized")
        code, _, seen = read_until_close(c, timeout)
        self.assertEqual(code, 4001, seen)

    def publish(self, channel, data):
        status, body, _ = rest(self.sup.http_port, "POST", "/v1/publish" + channel, PUBLISH_TOKEN, data)
        self.assertEqual(status, 200, body)
        return body["position"]


class AuthTest(AuthCase):
    """required = true, ES256 and RS256 keys, audience "dingo", leeway 0s, a publish token."""

    @classmethod
    def setUpClass(cls):
        cls.sup = start_supervisor(gateway_extra=f'client_publish = true\npoll_timeout = "20s"\n'
                                                 f'publish_token = "{PUBLISH_TOKEN}"\n')

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    # ---- WebSocket: connect, subscribe, publish ----

    def test_ws_auth_reply_and_subscribe_allowed_and_forbidden(self):
        c = self.ws()
        r = c.command("auth", token=mint(subscribe=["/rooms/*"], ttl=60))
        self.assertEqual((r["ok"], r["user"]), (True, "alice"), r)
        self.assertTrue(50_000 < r["expires_in_ms"] <= 60_000, r)
        self.assertTrue(c.command("subscribe", channel="/rooms/1")["ok"])
        self.assertTrue(c.command("subscribe", channel="/rooms/1/x")["ok"])
        for channel in ["/other", "/rooms", "/roomsx/1"]:
            self.assertError(c.command("subscribe", channel=channel), "forbidden")
        self.assertTrue(c.command("ping")["ok"], "a forbidden subscribe leaves the connection open")
        # Delivery on the allowed channel.
        pos = self.publish("/rooms/1", {"n": 1})
        self.assertEqual(c.next_message(), {"event": "message", "channel": "/rooms/1", "position": pos,
                                            "data": {"n": 1}})
        # A second auth is a bad_request (refresh is the way).
        self.assertError(c.command("auth", token=mint(subscribe=["/rooms/*"])), "bad_request")

    def test_rs256_token_and_audience_array_accepted(self):
        c = self.ws(mint(key="rsa", subscribe=["/rooms/*"], aud=["other", "dingo"]))
        self.assertTrue(c.command("subscribe", channel="/rooms/rsa")["ok"])

    def test_ws_publish_allowed_and_forbidden(self):
        c = self.ws(mint(subscribe=["/rooms/*"], publish=["/rooms/*"]))
        self.assertTrue(c.command("subscribe", channel="/rooms/pub")["ok"])
        p = c.command("publish", channel="/rooms/pub", data="hi")
        self.assertTrue(p["ok"], p)
        self.assertEqual(c.next_message()["position"], p["position"])
        self.assertError(c.command("publish", channel="/other", data="no"), "forbidden")
        reader = self.ws(mint(sub="bob", subscribe=["/rooms/*"]))  # may read, not write
        self.assertError(reader.command("publish", channel="/rooms/pub", data="no"), "forbidden")
        self.assertTrue(reader.command("ping")["ok"])

    def test_dingoctl_token_is_a_jwt_others_verify_and_we_accept(self):
        key = os.path.join(self.sup.dir, "es.key")
        with open(key, "wb") as f:
            f.write(ES_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        r = subprocess.run([binary("dingoctl"), "token", "--key", key, "--sub", "carol", "--subscribe",
                            "/users/{sub}/*", "--publish", "/rooms/9", "--ttl", "10m", "--audience", "dingo"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        token = r.stdout.strip()
        # python3-jwt checks the signature with the public key, and the claims.
        got = jwt.decode(token, ES_KEY.public_key(), algorithms=["ES256"], audience="dingo")
        self.assertEqual(got["sub"], "carol")
        self.assertEqual(got["channels"], {"subscribe": ["/users/{sub}/*"], "publish": ["/rooms/9"]})
        self.assertAlmostEqual(got["exp"] - time.time(), 600, delta=30)
        c = self.ws(token)
        self.assertTrue(c.command("subscribe", channel="/users/carol/inbox")["ok"])
        self.assertEqual(c.command("subscribe", channel="/users/dave/inbox")["error"]["code"], "forbidden")
        # HS256 from a secret file, and bad input exits 2.
        secret = os.path.join(self.sup.dir, "hs.secret")
        with open(secret, "w") as f:
            f.write("k" * 40 + "\n")
        r = subprocess.run([binary("dingoctl"), "token", "--key", secret, "--sub", "x"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(jwt.decode(r.stdout.strip(), "k" * 40, algorithms=["HS256"])["sub"], "x")
        for bad in (["--key", key, "--subscribe", "/a/*/b"], ["--key", key, "--ttl", "soon"],
                    ["--key", os.path.join(self.sup.dir, "missing.key")]):
            r = subprocess.run([binary("dingoctl"), "token", *bad], capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            self.assertTrue(r.stderr.startswith("dingoctl: "), r.stderr)

    def test_ws_token_in_url(self):
        c = self.ws(query_token=mint(subscribe=["/rooms/*"]))
        self.assertTrue(c.command("subscribe", channel="/rooms/url")["ok"])
        bad = self.ws(query_token=mint(exp=int(time.time()) - 5))
        first = bad.next_message()
        self.assertIsNone(first["id"], first)
        self.assertRefusedThenClosed(bad, first)

    def test_own_sub_channel(self):
        c = self.ws(mint(sub="alice", subscribe=["/users/{sub}/*"]))
        self.assertTrue(c.command("subscribe", channel="/users/alice/inbox")["ok"])
        self.assertError(c.command("subscribe", channel="/users/bob/inbox"), "forbidden")
        self.assertError(c.command("subscribe", channel="/users/alice"), "forbidden")
        b = self.ws(mint(sub="bob", subscribe=["/users/{sub}/*"]))
        self.assertTrue(b.command("subscribe", channel="/users/bob/inbox")["ok"])
        self.assertError(b.command("subscribe", channel="/users/alice/inbox"), "forbidden")

    def test_command_before_auth_unauthorized_then_4001(self):
        c = self.ws()
        self.assertTrue(c.command("ping")["ok"], "ping is allowed before auth")
        self.assertRefusedThenClosed(c, c.command("subscribe", channel="/rooms/1"))

    def test_bad_tokens_refused_then_4001(self):
        now = int(time.time())
        good = mint(subscribe=["/*"])
        h, p, s = good.split(".")
        tampered = h + "." + b64u(json.dumps(claims(sub="mallory")).encode()) + "." + s
        cases = {
            "hs256 keyed with the ES public key": by_hand(
                {"alg": "HS256", "typ": "JWT"}, claims(),
                lambda si: hmac.new(ES_PUB, si, hashlib.sha256).digest()),
            "hs256 keyed with the RSA public key": by_hand(
                {"alg": "HS256", "typ": "JWT"}, claims(),
                lambda si: hmac.new(RSA_PUB, si, hashlib.sha256).digest()),
            "alg none": by_hand({"alg": "none", "typ": "JWT"}, claims()),
            "alg none by the library": jwt.encode(claims(), None, algorithm="none"),
            "expired 1 s ago": mint(exp=now - 1),
            "wrong aud": mint(aud="someone-else"),
            "no aud": mint(aud=None),
            "nbf in the future": mint(nbf=now + 60),
            "signature of another payload": tampered,
            "key not configured": mint(key="other"),
            "garbage": "not.a.jwt",
        }
        # Properly signed, but without exp (required).
        cases["no exp"] = jwt.encode({"sub": "alice", "aud": "dingo"}, ES_KEY, algorithm="ES256")
        for name, token in cases.items():
            with self.subTest(name):
                c = self.ws()
                r = c.command("auth", token=token)
                self.assertRefusedThenClosed(c, r)
                if name == "expired 1 s ago":
                    self.assertIn("expired", r["error"]["message"])

    # ---- REST ----

    def test_rest_publish_needs_rights_or_the_static_token(self):
        port = self.sup.http_port
        status, body, _ = rest(port, "POST", "/v1/publish/rooms/1", mint(publish=["/rooms/*"]), {"a": 1})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["channel"], "/rooms/1")
        self.assertHttpError(*rest(port, "POST", "/v1/publish/rooms/1", mint(subscribe=["/rooms/*"]), 1),
                             "forbidden")
        self.assertHttpError(*rest(port, "POST", "/v1/publish/rooms/1", mint(publish=["/other/*"]), 1),
                             "forbidden")
        # publish_token is set: loopback without a token is no longer enough.
        self.assertHttpError(*rest(port, "POST", "/v1/publish/rooms/1", None, 1), "unauthorized")
        self.assertHttpError(*rest(port, "POST", "/v1/publish/rooms/1", "garbage", 1), "unauthorized")
        self.assertHttpError(*rest(port, "POST", "/v1/publish/rooms/1", mint(publish=["/*"], exp=int(time.time()) - 2), 1),
                             "unauthorized")
        status, body, _ = rest(port, "POST", "/v1/publish/rooms/1", PUBLISH_TOKEN, 2)
        self.assertEqual(status, 200, body)

    def test_rest_history_and_channels_need_subscribe_rights(self):
        port = self.sup.http_port
        self.publish("/rooms/h", "x")
        reader = mint(subscribe=["/rooms/*"])
        for path in ["/v1/history/rooms/h", "/v1/channels/rooms/h"]:
            with self.subTest(path):
                status, body, _ = rest(port, "GET", path, reader)
                self.assertEqual(status, 200, body)
                self.assertHttpError(*rest(port, "GET", path, mint(subscribe=["/other/*"], publish=["/rooms/*"])),
                                     "forbidden")
                self.assertHttpError(*rest(port, "GET", path), "unauthorized")

    # ---- SSE and long-polling ----

    def test_sse_with_bearer_and_query_token(self):
        token = mint(subscribe=["/rooms/*"])
        s = self.sse(["/rooms/sse"], token=token)
        self.assertEqual(s.status, 200, s.head)
        self.assertIn("text/event-stream", s.headers.get("content-type", ""))
        self.assertEqual(s.event()["event"], "state")
        pos = self.publish("/rooms/sse", "one")
        m = s.event()
        self.assertEqual((m["event"], json.loads(m["data"])["position"]), ("message", pos))
        q = self.sse(["/rooms/sse"], query_token=token)
        self.assertEqual(q.status, 200, q.head)
        self.assertEqual(q.event()["event"], "state")
        # Resuming with Last-Event-ID is checked against the token it comes with.
        again = self.sse(["/rooms/sse"], last_event_id=m["id"])
        self.assertHttpError(again.status, again.error, again.headers, "unauthorized")
        again = self.sse(["/rooms/sse"], token=mint(subscribe=["/news/*"]), last_event_id=m["id"])
        self.assertHttpError(again.status, again.error, again.headers, "forbidden")
        again = self.sse(["/rooms/sse"], token=token, last_event_id=m["id"])
        self.assertEqual(again.status, 200, again.head)
        self.assertEqual(again.event()["event"], "state")

    def test_sse_refusals(self):
        s = self.sse(["/rooms/sse2"])
        self.assertHttpError(s.status, s.error, s.headers, "unauthorized")
        s = self.sse(["/rooms/sse2"], token="garbage")
        self.assertHttpError(s.status, s.error, s.headers, "unauthorized")
        s = self.sse(["/other"], token=mint(subscribe=["/rooms/*"]))
        self.assertHttpError(s.status, s.error, s.headers, "forbidden")
        s = self.sse(["/rooms/sse2", "/other"], query_token=mint(subscribe=["/rooms/*"]))
        self.assertHttpError(s.status, s.error, s.headers, "forbidden")

    def test_poll_needs_the_token_on_every_poll(self):
        port = self.sup.http_port
        token = mint(subscribe=["/rooms/*"])
        status, first, _ = poll(port, ["/rooms/p"], token=token)
        self.assertEqual(status, 200, first)
        status, r, _ = poll(port, ["/rooms/p"], query_token=token)
        self.assertEqual(status, 200, r)
        self.assertHttpError(*poll(port, ["/rooms/p"]), "unauthorized")
        self.assertHttpError(*poll(port, ["/other"], token=token), "forbidden")
        # The cursor carries no rights.
        pos = self.publish("/rooms/p", "m")
        self.assertHttpError(*poll(port, ["/rooms/p"], first["cursor"]), "unauthorized")
        self.assertHttpError(*poll(port, ["/rooms/p"], first["cursor"], token=mint(subscribe=["/news/*"])),
                             "forbidden")
        status, r, _ = poll(port, ["/rooms/p"], first["cursor"], token=token)
        self.assertEqual(status, 200, r)
        self.assertEqual([m["position"] for m in r["messages"]], [pos])

    def test_held_poll_and_sse_end_at_token_expiry(self):
        port = self.sup.http_port
        exp = int(time.time()) + 3
        token = mint(subscribe=["/rooms/*"], exp=exp)
        status, first, _ = poll(port, ["/rooms/exp"], token=token)
        self.assertEqual(status, 200, first)
        result = {}

        def held():
            try:
                result["r"] = poll(port, ["/rooms/exp"], first["cursor"], token=token, timeout=30)
            except Exception as e:  # noqa: BLE001 (reported below)
                result["error"] = e
            result["t"] = time.time()

        t = threading.Thread(target=held)
        t.start()
        s = self.sse(["/rooms/exp"], token=token)
        self.assertEqual(s.status, 200, s.head)
        try:
            while True:
                e = s.event(timeout=max(0.1, exp + 5 - time.time()))
                self.assertNotEqual(e["event"], "message", e)
        except (EOFError, ConnectionError):
            ended = time.time()
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertNotIn("error", result)
        status, body, _ = result["r"]
        self.assertEqual(status, 200, body)
        self.assertEqual(body["messages"], [])
        # poll_timeout is 20 s: the poll answered at the token's exp (leeway 0), well before.
        self.assertTrue(exp - 1 <= result["t"] <= exp + 3, (result["t"] - exp))
        self.assertTrue(exp - 1 <= ended <= exp + 3, (ended - exp))

    # ---- refresh and expiry on WebSocket ----

    def test_refresh_keeps_the_connection(self):
        c = self.ws(mint(subscribe=["/rooms/*"], ttl=60))
        self.assertTrue(c.command("subscribe", channel="/rooms/r")["ok"])
        r = c.command("refresh", token=mint(subscribe=["/rooms/*"], ttl=600))
        self.assertEqual((r["ok"], r["user"]), (True, "alice"), r)
        self.assertTrue(500_000 < r["expires_in_ms"] <= 600_000, r)
        pos = self.publish("/rooms/r", "after")
        self.assertEqual(c.next_message()["position"], pos)
        self.assertTrue(c.command("subscribe", channel="/rooms/r2")["ok"])

    def test_refresh_that_narrows_rights_drops_subscriptions(self):
        c = self.ws(mint(subscribe=["/rooms/*", "/news/*"]))
        self.assertTrue(c.command("subscribe", channel="/rooms/a")["ok"])
        self.assertTrue(c.command("subscribe", channel="/news/b")["ok"])
        r = c.command("refresh", token=mint(subscribe=["/rooms/*"]))
        self.assertTrue(r["ok"], r)
        self.assertEqual(c.pushed, [{"event": "unsubscribed", "channel": "/news/b", "reason": "forbidden"}],
                         "the event comes before the reply, for /news/b only")
        c.pushed.clear()
        self.publish("/news/b", "dropped")
        pos = self.publish("/rooms/a", "kept")
        m = c.next_message()
        self.assertEqual((m["channel"], m["position"]), ("/rooms/a", pos), m)
        self.assertTrue(c.command("ping")["ok"])
        self.assertEqual(c.pushed, [], "nothing more, and nothing of /news/b")
        self.assertError(c.command("subscribe", channel="/news/c"), "forbidden")

        def no_subscriber():
            status, body, _ = rest(self.sup.http_port, "GET", "/v1/channels/news/b", PUBLISH_TOKEN)
            return status == 200 and body["subscribers"] == 0
        wait_for(no_subscriber, 5, what="no subscriber left on /news/b")

    def test_refresh_with_another_sub_is_forbidden_and_keeps_the_old_token(self):
        c = self.ws(mint(sub="alice", subscribe=["/rooms/*"]))
        self.assertTrue(c.command("subscribe", channel="/rooms/o")["ok"])
        self.assertError(c.command("refresh", token=mint(sub="bob", subscribe=["/*"])), "forbidden")
        self.assertError(c.command("subscribe", channel="/news/o"), "forbidden")  # bob's rights not taken
        pos = self.publish("/rooms/o", "still")
        self.assertEqual(c.next_message()["position"], pos)

    def test_token_expiring_then_close_4001(self):
        exp = int(time.time()) + 3
        c = self.ws(mint(subscribe=["/rooms/*"], exp=exp))
        self.assertTrue(c.command("subscribe", channel="/rooms/e")["ok"])
        m = c.next_message(timeout=max(0.1, exp + 1 - time.time()))
        self.assertEqual(m["event"], "token_expiring", m)
        self.assertLess(time.time(), exp, "token_expiring comes before exp")
        self.assertTrue(0 < m["in_ms"] <= 2100, m)  # expiring_notice = 2s
        code, reason, seen = read_until_close(c, timeout=max(0.1, exp + 4 - time.time()))
        closed = time.time()
        self.assertEqual(code, 4001, (reason, seen))
        self.assertIn(b"expired", reason)
        self.assertTrue(exp - 1 <= closed <= exp + 3, closed - exp)

    # ---- metrics ----

    def test_refusals_are_counted_in_metrics(self):
        expected = [("unauthorized", "expired"), ("unauthorized", "algorithm"), ("unauthorized", "audience"),
                    ("unauthorized", "missing"), ("forbidden", "subscribe"), ("forbidden", "publish"),
                    ("forbidden", "other_user")]
        for token in [mint(exp=int(time.time()) - 10), by_hand({"alg": "none"}, claims()), mint(aud="x")]:
            c = self.ws()
            self.assertRefusedThenClosed(c, c.command("auth", token=token))
        s = self.sse(["/rooms/m"])
        self.assertEqual(s.status, 401)
        c = self.ws(mint(subscribe=["/rooms/*"]))
        self.assertError(c.command("subscribe", channel="/other"), "forbidden")
        self.assertError(c.command("publish", channel="/rooms/m", data=1), "forbidden")
        self.assertError(c.command("refresh", token=mint(sub="bob")), "forbidden")

        def counted():
            status, body, _ = http_get(self.sup.admin_port, "/metrics")
            if status != 200:
                return None
            text = body.decode()
            missing = [(code, reason) for code, reason in expected
                       if sum(v for _, v in series(text, "dingo_worker_auth_refusals_total",
                                                   code=code, reason=reason)) < 1]
            return text if not missing else None
        text = wait_for(counted, 10, what="every refusal counted in dingo_worker_auth_refusals_total")
        self.assertEqual(metrics_problems(text), [])


class DisconnectTest(AuthCase):
    def setUp(self):
        super().setUp()
        self.sup = start_supervisor(workers=2)

    def tearDown(self):
        super().tearDown()
        self.sup.cleanup()

    def test_disconnect_user_closes_that_users_connections_on_every_worker(self):
        def per_worker(total):
            return wait_for(lambda: (lambda ws: ws if sum(ws) == total else None)(
                [w["ws_connections"] for w in self.sup.status()["workers"]]), 10,
                what=f"{total} connections counted by the workers")

        # At least 6 of alice's, and more until both workers hold some: in kernel accept
        # mode the kernel picks a worker at random, and 6 may all land on one.
        alice = []
        while len(alice) < 6 or not all(per_worker(len(alice))):
            self.assertLess(len(alice), 40, "40 connections and still one worker holds them all")
            alice.append(self.ws(mint(sub="alice", subscribe=["/rooms/*"])))
        bob = self.ws(mint(sub="bob", subscribe=["/rooms/*"]))
        self.assertTrue(bob.command("subscribe", channel="/rooms/d")["ok"])
        self.assertEqual(len(per_worker(len(alice) + 1)), 2)
        r = self.sup.ctl("disconnect", "--user", "alice", "--reason", "test", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        reply = json.loads(r.stdout)
        self.assertEqual(reply, {"ok": True, "closed": len(alice), "workers": 2})
        for c in alice:
            code, reason, _ = read_until_close(c, 5)
            self.assertEqual(code, 4003)
            self.assertIn(b"test", reason)
        self.assertTrue(bob.command("ping")["ok"])
        pos = self.publish_no_token("/rooms/d")
        self.assertEqual(bob.next_message()["position"], pos)
        # Not a ban: alice may come back with a valid token.
        self.assertTrue(self.ws(mint(sub="alice", subscribe=["/rooms/*"])).command("ping")["ok"])
        # Nobody left to put out.
        r = self.sup.ctl("disconnect", "--user", "carol", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["closed"], 0)

    def publish_no_token(self, channel):
        # No publish_token here: the loopback backend may publish without a token.
        status, body, _ = rest(self.sup.http_port, "POST", "/v1/publish" + channel, None, "x")
        self.assertEqual(status, 200, body)
        return body["position"]


class KeyRotationTest(AuthCase):
    def setUp(self):
        super().setUp()
        self.sup = start_supervisor(workers=2, keys=("es.pub",))

    def tearDown(self):
        super().tearDown()
        self.sup.cleanup()

    def test_key_added_by_reload_is_accepted(self):
        rsa_token = mint(key="rsa", subscribe=["/rooms/*"])
        c = self.ws()
        self.assertRefusedThenClosed(c, c.command("auth", token=rsa_token))
        old = self.sup.worker_pids()
        gen = self.sup.status()["generation"]
        with open(self.sup.config) as f:
            text = f.read()
        self.assertIn('jwt_public_keys = ["es.pub"]', text)
        with open(self.sup.config, "w") as f:
            f.write(text.replace('jwt_public_keys = ["es.pub"]', 'jwt_public_keys = ["es.pub", "rsa.pub"]'))
        r = self.sup.ctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: reloaded(self.sup, old, gen + 1), 10, what="every worker replaced")
        # Two connections in a row: round-robin puts one on each new worker.
        for c in [self.ws(rsa_token), self.ws(rsa_token)]:
            self.assertTrue(c.command("subscribe", channel="/rooms/rot")["ok"])
        # The ES256 key is still there.
        self.assertTrue(self.ws(mint(subscribe=["/rooms/*"])).command("subscribe", channel="/rooms/rot")["ok"])

    def test_loopback_backend_publishes_without_a_token_when_no_publish_token(self):
        status, body, _ = rest(self.sup.http_port, "POST", "/v1/publish/rooms/1", None, {"a": 1})
        self.assertEqual(status, 200, body)
        # A token that is presented is checked all the same.
        self.assertHttpError(*rest(self.sup.http_port, "POST", "/v1/publish/rooms/1", "garbage", 1), "unauthorized")
        self.assertHttpError(*rest(self.sup.http_port, "POST", "/v1/publish/rooms/1", mint(publish=["/other/*"]), 1),
                             "forbidden")


class OptionalAuthTest(AuthCase):
    @classmethod
    def setUpClass(cls):
        cls.sup = start_supervisor(workers=2, required=False, gateway_extra="client_publish = true\n",
                                   more='anonymous_subscribe = ["/public/*"]\n')

    @classmethod
    def tearDownClass(cls):
        cls.sup.cleanup()

    def test_anonymous_client_limited_to_anonymous_patterns(self):
        c = self.ws()
        self.assertTrue(c.command("subscribe", channel="/public/x")["ok"])
        self.assertError(c.command("subscribe", channel="/private/x"), "forbidden")
        self.assertError(c.command("publish", channel="/public/x", data=1), "forbidden")  # anonymous_publish = []
        self.assertTrue(c.command("ping")["ok"])
        # A token still brings its own rights.
        t = self.ws(mint(subscribe=["/private/*"]))
        self.assertTrue(t.command("subscribe", channel="/private/x")["ok"])

    def test_bad_token_refused_and_the_connection_stays_anonymous(self):
        c = self.ws()
        self.assertError(c.command("auth", token=mint(exp=int(time.time()) - 5, subscribe=["/*"])), "unauthorized")
        self.assertTrue(c.command("ping")["ok"], "the connection stays open")
        self.assertTrue(c.command("subscribe", channel="/public/y")["ok"])
        self.assertError(c.command("subscribe", channel="/private/y"), "forbidden")
        bad = self.ws(query_token="garbage")
        first = bad.next_message()
        self.assertEqual((first["id"], first["error"]["code"]), (None, "unauthorized"), first)
        self.assertTrue(bad.command("ping")["ok"])


if __name__ == "__main__":
    unittest.main()
