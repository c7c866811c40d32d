"""dingo-nsclient and GET /v1/nodes, against a real DNS server (dnsmasq on a loopback port)
and real gateways on several loopback addresses."""
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from harness import SOURCE, Supervisor, binary, certs, free_port, healthz_worker, http_get, wait_for
from test_pubsub import publish

NAME = "gw.dingo.test"
BACKUP = "backup.dingo.test"


def make_certs(d, name, ca_from=None):
    """dev-cert.sh certificates for `name` (plus localhost and 127.0.0.1), signed by the CA
    of `ca_from` when given (so that one CA vouches for both names)."""
    os.makedirs(d, exist_ok=True)
    if ca_from:
        for f in ("ca.pem", "ca.key"):
            shutil.copy(os.path.join(ca_from, f), d)
    subprocess.run([os.path.join(SOURCE, "scripts", "dev-cert.sh"), d, name], check=True, stdout=subprocess.DEVNULL)
    return d


class Gateway:
    """A standalone dingo-gateway with TLS on HOST:PORT."""

    def __init__(self, work, host, port, cert_dir, extra=""):
        self.host, self.port = host, port
        self.config = os.path.join(work, f"gw-{host}-{port}.toml")
        with open(self.config, "w") as f:
            f.write(f"""
[tls]
cert = "{cert_dir}/cert.pem"
key = "{cert_dir}/key.pem"
[gateway]
client_publish = true
{extra}
""")
        self.log = open(os.path.join(work, f"gw-{host}-{port}.log"), "wb")
        self.proc = subprocess.Popen([binary("dingo-gateway"), "--standalone", "--config", self.config,
                                      "--listen-tls", f"{host}:{port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                socket.create_connection((host, port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 10, what=f"gateway on {host}:{port}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Dnsmasq:
    """dnsmasq answering only for the records given, on 127.0.0.1:PORT."""

    def __init__(self, work, records, ttl=0):
        self.port = free_port()
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={self.port}",
                f"--local-ttl={ttl}", f"--pid-file={os.path.join(work, 'dnsmasq.pid')}", "--log-facility=-"]
        if os.geteuid() == 0:
            args.append("--user=root")
        for name, addrs in records.items():
            for a in addrs:
                args.append(f"--host-record={name},{a}")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.server = f"127.0.0.1:{self.port}"

        def answers():
            assert self.proc.poll() is None, "dnsmasq did not start"
            return dns_answers(self.port)
        wait_for(answers, 10, what="dnsmasq answering")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def dns_answers(port, name="dingo.test"):
    """True when a DNS server on 127.0.0.1:PORT answers a query (any answer, NXDOMAIN too)."""
    qid = os.urandom(2)
    query = qid + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # recursion desired, one question
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(query, ("127.0.0.1", port))
        try:
            reply, _ = s.recvfrom(4096)
        except socket.timeout:
            return False
        except ConnectionRefusedError:  # ICMP port unreachable: nothing bound yet
            return False
    return reply[:2] == qid and reply[2] & 0x80 != 0


class BlackHole:
    """Accepts TCP connections (the kernel does the handshake) and never answers."""

    def __init__(self, host):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"{host}:{self.port}"

    def close(self):
        self.sock.close()


class SlowProxy:
    """Forwards to TARGET, but holds each new connection `delay` seconds first."""

    def __init__(self, host, target, delay):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"{host}:{self.port}"
        self.target, self.delay = target, delay
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        time.sleep(self.delay)  # the slowness is what the test is about, not a wait
        try:
            u = socket.create_connection(self.target, timeout=5)
        except OSError:
            c.close()
            return

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()
        pipe(c, u)

    def close(self):
        self.stopping = True
        self.sock.close()


class NsClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="dingo-ns-")
        cls.good = make_certs(os.path.join(cls.work, "good"), NAME)
        cls.evil = make_certs(os.path.join(cls.work, "evil"), "evil.example", ca_from=cls.good)
        cls.ca = os.path.join(cls.good, "ca.pem")
        cls.port = free_port()
        # Two gateways on one port of two loopback addresses (what DNS would give), and
        # one whose certificate, from the same CA, is for another name.
        cls.a = Gateway(cls.work, "127.0.0.2", cls.port, cls.good,
                        extra='[nodes]\nttl = "60s"\nendpoints = ["127.0.0.2:%d", "127.0.0.3:%d"]' % (cls.port, cls.port))
        cls.b = Gateway(cls.work, "127.0.0.3", cls.port, cls.good,
                        extra='[nodes]\nttl = "60s"\nendpoints = ["127.0.0.2:%d", "127.0.0.3:%d"]' % (cls.port, cls.port))
        cls.evil_gw = Gateway(cls.work, "127.0.0.4", cls.port, cls.evil)

    @classmethod
    def tearDownClass(cls):
        for g in (cls.a, cls.b, cls.evil_gw):
            g.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.db = os.path.join(tempfile.mkdtemp(dir=self.work), "ns.db")
        self.dns = None

    def tearDown(self):
        if self.dns:
            self.dns.stop()

    def ns(self, *args, dns=True, timeout=30, check=False, server_name=NAME):
        cmd = [binary("dingo-nsclient"), "--db", self.db, "--ca", self.ca, "--port", str(self.port),
               "--dns-timeout", "1s"]
        # DNS only from our dnsmasq on loopback; without it, no domain to look up (the TLS
        # name is still the service's).
        if dns and self.dns:
            cmd += ["--primary", NAME, "--backup", BACKUP, "--dns-server", self.dns.server]
        else:
            cmd += ["--server-name", server_name]
        r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def ns_json(self, *args, **kw):
        r = self.ns(*args, "--json", check=True, **kw)
        return json.loads(r.stdout)

    # ---- DNS --------------------------------------------------------------------------

    def test_the_primary_domain_resolves(self):
        self.dns = Dnsmasq(self.work, {NAME: ["127.0.0.2"], BACKUP: ["127.0.0.3"]})
        c = self.ns_json("resolve")["candidates"]
        self.assertEqual((c[0]["host"], c[0]["port"], c[0]["source"]), ("127.0.0.2", self.port, "primary"))
        self.assertNotIn("backup", [x["source"] for x in c])  # only when the primary fails
        self.assertEqual(set(c[0]) >= {"host", "port", "source", "age_s", "score"}, True)
        probe = self.ns_json("probe")["results"]
        self.assertTrue(probe[0]["ok"], probe)
        self.assertGreater(probe[0]["rtt_ms"], 0)

    def test_with_the_primary_domain_gone_the_backup_domain_is_used(self):
        self.dns = Dnsmasq(self.work, {BACKUP: ["127.0.0.3"]})
        r = self.ns("resolve", "--json", check=True)
        c = json.loads(r.stdout)["candidates"]
        self.assertEqual((c[0]["host"], c[0]["source"]), ("127.0.0.3", "backup"))
        self.assertIn(f"DNS {NAME}", r.stderr)
        # And it is dialled as the service: TLS verified for the primary name.
        self.assertTrue(self.ns_json("probe")["results"][0]["ok"])

    def test_with_dns_dead_the_stored_list_answers_quickly(self):
        self.dns = Dnsmasq(self.work, {NAME: ["127.0.0.2"]})
        r = self.ns_json("refresh")
        self.assertTrue(r["ok"])
        self.assertEqual(r["nodes"], 2)
        self.dns.stop()
        # A DNS server that never answers (a bound UDP socket) is the worst case.
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))
        try:
            t0 = time.monotonic()
            r = self.ns("resolve", "--json", "--primary", NAME, "--backup", BACKUP,
                        "--dns-server", f"127.0.0.1:{dead.getsockname()[1]}", dns=False)
            elapsed = time.monotonic() - t0
        finally:
            dead.close()
        self.assertEqual(r.returncode, 0, r.stderr)
        c = json.loads(r.stdout)["candidates"]
        self.assertEqual({x["host"] for x in c if x["source"] == "store"}, {"127.0.0.2", "127.0.0.3"})
        self.assertFalse(c[0]["stale"])
        self.assertIn("no answer", r.stderr)
        # Bounded by --dns-timeout (1 s), not by resolver retries.
        self.assertLess(elapsed, 4, f"resolve took {elapsed:.1f}s with DNS dead")

    # ---- TLS ----------------------------------------------------------------------------

    def test_a_certificate_for_another_name_is_refused_even_when_dialled_by_ip(self):
        evil = f"127.0.0.4:{self.port}"
        r = self.ns("probe", "--json", "--seed", evil, check=False)
        res = json.loads(r.stdout)["results"]
        self.assertEqual(len(res), 1)
        self.assertFalse(res[0]["ok"])
        self.assertIn("certificate", res[0]["error"])
        self.assertEqual(r.returncode, 1)
        r = self.ns("refresh", "--seed", evil)
        self.assertEqual(r.returncode, 1)
        self.assertIn("certificate", r.stderr)
        # The same gateway is fine under the name its certificate has.
        r = self.ns("probe", "--json", "--seed", evil, server_name="evil.example")
        self.assertTrue(json.loads(r.stdout)["results"][0]["ok"], r.stdout)

    # ---- the race ------------------------------------------------------------------------

    def test_the_race_skips_a_black_hole_without_waiting_for_its_timeout(self):
        hole = BlackHole("127.0.0.5")
        try:
            t0 = time.monotonic()
            r = self.ns_json("refresh", "--seed", hole.endpoint, "--seed", f"127.0.0.2:{self.port}",
                             "--timeout", "10s", dns=False)
            elapsed = time.monotonic() - t0
        finally:
            hole.close()
        self.assertEqual(r["from"], f"127.0.0.2:{self.port}")
        self.assertLess(elapsed, 5, f"the race waited {elapsed:.1f}s: it should move on after the 250ms stagger")
        # The black hole, which lost to an attempt started later, now ranks below it.
        c = self.ns_json("resolve", "--seed", hole.endpoint, "--seed", f"127.0.0.2:{self.port}", dns=False)
        order = [f"{x['host']}:{x['port']}" for x in c["candidates"]]
        self.assertLess(order.index(f"127.0.0.2:{self.port}"), order.index(hole.endpoint))

    def test_the_race_prefers_the_fast_endpoint(self):
        slow = SlowProxy("127.0.0.6", ("127.0.0.3", self.port), delay=1.5)
        try:
            # The slow one is tried first (the order of the seeds); the fast one starts a
            # stagger later and wins.
            r = self.ns_json("refresh", "--seed", slow.endpoint, "--seed", f"127.0.0.2:{self.port}", dns=False)
            self.assertEqual(r["from"], f"127.0.0.2:{self.port}")
            c = self.ns_json("resolve", "--seed", slow.endpoint, "--seed", f"127.0.0.2:{self.port}", dns=False)
            self.assertEqual(c["candidates"][0]["host"], "127.0.0.2")
            probe = {f"{x['host']}:{x['port']}": x for x in
                     self.ns_json("probe", "--seed", slow.endpoint, dns=False)["results"]}
            self.assertGreater(probe[slow.endpoint]["rtt_ms"], 1400)
        finally:
            slow.close()

    # ---- the store ---------------------------------------------------------------------

    def test_nodes_list_is_stored_listed_and_forgotten(self):
        r = self.ns_json("refresh", "--seed", f"127.0.0.2:{self.port}", dns=False)
        self.assertEqual((r["nodes"], r["ttl_s"], r["changed"]), (2, 60, True))
        again = self.ns_json("refresh", "--seed", f"127.0.0.2:{self.port}", dns=False)
        self.assertEqual((again["version"], again["changed"]), (r["version"], False))
        listed = self.ns_json("list")
        self.assertEqual(sorted(x["host"] for x in listed["candidates"]), ["127.0.0.2", "127.0.0.3"])
        self.assertEqual(listed["nodes"]["ttl_s"], 60)
        self.assertEqual(self.ns_json("forget", f"127.0.0.3:{self.port}")["forgotten"], 1)
        self.assertEqual([x["host"] for x in self.ns_json("list")["candidates"]], ["127.0.0.2"])
        self.ns_json("forget", "--all")
        self.assertEqual(self.ns_json("list")["candidates"], [])
        self.assertEqual(self.ns("forget").returncode, 2)
        self.assertEqual(self.ns("forget", "nonsense").returncode, 2)

    def test_a_corrupt_database_file_is_moved_aside_and_rebuilt(self):
        folder = os.path.dirname(self.db)

        def moved_aside(stderr, content):
            """The one new .corrupt- file: named on stderr, holding `content`."""
            m = re.search(r"(\S+) was unreadable \((.+)\); moved it to (\S+) and started a new one", stderr, re.S)
            self.assertIsNotNone(m, stderr)
            self.assertEqual(m.group(1), self.db)
            aside = m.group(3)
            self.assertEqual(os.path.dirname(aside), folder)
            self.assertTrue(os.path.basename(aside).startswith(os.path.basename(self.db) + ".corrupt-"), aside)
            with open(aside, "rb") as f:
                self.assertEqual(f.read(), content, "the moved file is not the damaged one")
            return aside

        def works():
            """The rebuilt file is a valid store of the current schema, and is used."""
            db = sqlite3.connect(self.db)
            try:
                self.assertEqual(db.execute("PRAGMA quick_check").fetchone()[0], "ok")
                self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 2)
            finally:
                db.close()
            r = self.ns_json("refresh", "--seed", f"127.0.0.2:{self.port}", dns=False)
            self.assertEqual(r["nodes"], 2)
            self.assertEqual(sorted(x["host"] for x in self.ns_json("list")["candidates"]),
                             ["127.0.0.2", "127.0.0.3"])

        junk = b"this is not an SQLite database" * 100
        with open(self.db, "wb") as f:
            f.write(junk)
        r = self.ns("refresh", "--seed", f"127.0.0.2:{self.port}", dns=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        first = moved_aside(r.stderr, junk)
        works()

        # A file damaged inside (a valid header, pages of garbage) is moved aside too.
        with open(self.db, "r+b") as f:
            f.seek(4096)
            f.write(os.urandom(8192))
        with open(self.db, "rb") as f:
            damaged = f.read()
        r = self.ns("list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        second = moved_aside(r.stderr, damaged)
        self.assertNotEqual(second, first)
        self.assertEqual(json.loads(r.stdout)["candidates"], [])  # the new store starts empty
        works()
        # Both damaged files are kept, none overwritten.
        self.assertEqual(sorted(f for f in os.listdir(folder) if ".corrupt-" in f and not f.endswith(("-wal", "-shm"))),
                         sorted([os.path.basename(first), os.path.basename(second)]))

    def test_a_version_1_database_is_migrated(self):
        db = sqlite3.connect(self.db)
        db.executescript("""
            CREATE TABLE nodes(host TEXT NOT NULL, port INTEGER NOT NULL, tls INTEGER NOT NULL DEFAULT 1,
                               listed_at INTEGER NOT NULL, PRIMARY KEY(host, port));
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO nodes VALUES('127.0.0.9', 443, 1, strftime('%s','now'));
            INSERT INTO meta VALUES('nodes_version', '7'), ('nodes_ttl_s', '600'),
                                   ('nodes_refreshed_at', strftime('%s','now'));
            PRAGMA user_version = 1;""")
        db.close()
        listed = self.ns_json("list")
        self.assertEqual([x["host"] for x in listed["candidates"]], ["127.0.0.9"])
        self.assertEqual(listed["nodes"]["version"], 7)
        db = sqlite3.connect(self.db)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 2)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        db.close()

    def test_processes_sharing_one_database_never_fail_on_its_lock(self):
        procs = []
        for i in range(4):
            script = " && ".join(
                f"{binary('dingo-nsclient')} --db {self.db} --ca {self.ca} --server-name {NAME} "
                f"--seed 127.0.0.2:{self.port} {cmd}"
                for cmd in ["refresh", "probe", "refresh", "list", "probe"] * 3)
            procs.append(subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        for p in procs:
            _, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
            self.assertNotIn("locked", err)
        self.assertEqual(len(self.ns_json("list")["candidates"]), 2)

    # ---- the gateway side ------------------------------------------------------------------

    def test_v1_nodes_serves_the_configured_list_or_the_listeners(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = False
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.2", self.port, context=ctx, timeout=5)
        conn.request("GET", "/v1/nodes")
        body = json.loads(conn.getresponse().read())
        self.assertEqual(body["ttl_s"], 60)
        self.assertEqual(body["nodes"], [{"host": "127.0.0.2", "port": self.port, "tls": True},
                                         {"host": "127.0.0.3", "port": self.port, "tls": True}])
        self.assertIsInstance(body["version"], int)
        conn.request("POST", "/v1/nodes", body="")
        self.assertEqual(conn.getresponse().status, 405)
        conn.close()
        # Without [nodes]: the gateway's own listeners, and a default TTL.
        conn = http.client.HTTPSConnection("127.0.0.4", self.port, context=ctx, timeout=5)
        conn.request("GET", "/v1/nodes")
        body = json.loads(conn.getresponse().read())
        self.assertEqual(body["nodes"], [{"host": "127.0.0.4", "port": self.port, "tls": True}])
        self.assertEqual(body["ttl_s"], 600)
        conn.close()

    def test_connect_refreshes_the_node_list_in_the_background(self):
        gw = Gateway(self.work, "127.0.0.7", self.port, self.good,
                     extra='[nodes]\nttl = "2s"\nendpoints = ["127.0.0.7:%d"]' % self.port)
        try:
            proc = subprocess.Popen([binary("dingo-nsclient"), "--db", self.db, "--ca", self.ca, "--server-name", NAME,
                                     "--seed", f"127.0.0.7:{self.port}", "connect", "--channel", "/bg"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            ok = False
            try:
                # No list yet: fetched at once; then again at about 75% of its 2 s TTL,
                # while the subscription stays up.
                first = wait_for(lambda: self.ns_json("list").get("nodes"), 15, what="the first refresh")
                later = wait_for(lambda: (lambda n: n if n["refreshed_at"] > first["refreshed_at"] else None)(
                    self.ns_json("list")["nodes"]), 15, what="a refresh in the background")
                self.assertEqual(later["ttl_s"], 2)
                self.assertIsNone(proc.poll())
                ok = True
            finally:
                proc.terminate()
                _, err = proc.communicate(timeout=10)
                if not ok:
                    print("\ndingo-nsclient connect said:\n" + err)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(err.count("connected to"), 1, err)
            self.assertIn("node list refreshed from", err)
        finally:
            gw.stop()

    def test_connect_json_reports_events_as_json_lines(self):
        import http.client
        import ssl
        proc = subprocess.Popen([binary("dingo-nsclient"), "--db", self.db, "--ca", self.ca, "--server-name", NAME,
                                 "--seed", f"127.0.0.2:{self.port}", "--json", "connect", "--channel", "/js",
                                 "--count", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ctx = ssl.create_default_context(cafile=self.ca)
            ctx.check_hostname = False

            def published():
                conn = http.client.HTTPSConnection("127.0.0.2", self.port, context=ctx, timeout=5)
                try:
                    conn.request("GET", "/v1/channels/js")
                    if json.loads(conn.getresponse().read())["subscribers"] < 1:
                        return False
                    conn.request("POST", "/v1/publish/js", body='{"k":"v"}')
                    return conn.getresponse().status == 200
                finally:
                    conn.close()
            wait_for(published, 10, what="the subscriber, then the publish")
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(json.loads(out)["data"], {"k": "v"})
        events = [json.loads(line) for line in err.splitlines()]
        self.assertEqual([e["event"] for e in events if e["event"] in ("connected", "subscribed")],
                         ["connected", "subscribed"], err)
        self.assertEqual(events[0]["endpoint"], f"127.0.0.2:{self.port}")

    def test_bad_usage_exits_2(self):
        for args in (["connect"], ["connect", "--channel", "no-slash"], ["resolve", "--seed", "host"],
                     ["resolve", "--timeout", "soon"], ["nonsense"], ["resolve", "--dns-server", "x"]):
            r = self.ns(*args, dns=False)
            self.assertEqual(r.returncode, 2, (args, r.stderr))


class ConnectTest(unittest.TestCase):
    """connect: subscribe, print JSON lines, and resume without loss across a worker kill."""

    def test_connect_resumes_without_loss_across_a_worker_kill(self):
        sup = Supervisor(workers=2, dispatch="round-robin")
        sup.start()
        work = tempfile.mkdtemp(prefix="dingo-ns-")
        proc = None
        try:
            c = certs()
            out = open(os.path.join(work, "out.jsonl"), "w+")
            err = open(os.path.join(work, "err.log"), "w+")
            proc = subprocess.Popen(
                [binary("dingo-nsclient"), "--db", os.path.join(work, "ns.db"), "--ca", f"{c}/ca.pem",
                 "--server-name", "localhost", "--seed", f"127.0.0.1:{sup.tls_port}",
                 "connect", "--channel", "/resume", "--count", "60", "--keepalive", "1s",
                 "--drop-spread", "1s", "--retry-initial", "200ms"],
                stdout=out, stderr=err)
            wait_for(lambda: "subscribed /resume" in open(err.name).read(), 10, what="the subscription")
            for i in range(20):
                self.assertEqual(publish(sup.http_port, "/resume", {"n": i})[0], 200)
            wait_for(lambda: len(open(out.name).read().splitlines()) == 20, 10, what="20 messages")
            # Kill the worker holding the subscription; publish while it reconnects.
            holder = wait_for(lambda: [w for w in sup.status()["workers"] if w["ws_connections"] > 0], 5,
                              what="the worker holding the subscription")
            self.assertEqual(len(holder), 1, sup.status()["workers"])
            os.kill(holder[0]["pid"], signal.SIGKILL)
            for i in range(20, 60):
                wait_for(lambda: publish(sup.http_port, "/resume", {"n": i})[0] == 200, 10, what="a publish")
                time.sleep(0.02)  # pacing: the publishes spread over the reconnect
            self.assertEqual(proc.wait(timeout=30), 0, open(err.name).read())
            lines = [json.loads(x) for x in open(out.name).read().splitlines()]
            self.assertEqual([m["data"]["n"] for m in lines], list(range(60)), open(err.name).read())
            seqs = [int(m["position"].split(".")[1]) for m in lines]
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + 60)))
            log = open(err.name).read()
            self.assertIn("disconnected", log)
            self.assertEqual(log.count("subscribed /resume"), 2, log)
            self.assertNotIn("recovered: false", log)
        finally:
            if proc and proc.poll() is None:
                proc.kill()
            sup.cleanup()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
