"""The Redis engine ([bus] engine = "redis"): two supervisors on one real redis-server act
as one service. Publishes on either reach subscribers on both, positions are the same
everywhere, a client resumes on the other supervisor, Redis going away answers 503 and
comes back without a silent gap, and a pub/sub connection killed from Redis is repaired
without the clients noticing. The node registry: /v1/nodes on either supervisor lists
both, drops one that stops (at once) or dies (when its entry expires), and
dingo-nsclient follows. (Separate network namespaces and Redis Cluster are to come:
docs/architecture.md.)"""
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import Supervisor, binary, certs, free_port, http_get, wait_for
from wsclient import Closed, WsClient


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="dingo-redis-")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", 10, what="redis-server up")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class StallingProxy:
    """A TCP proxy to Redis that can go silent: freeze() stops forwarding what Redis
    sends on every connection open now, and keeps them open (a middlebox that drops a
    flow); connections made later pass. freeze_commands() is a Redis whose command
    connections hang, old and new, while pub/sub ones work; thaw() ends it."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.flows = []  # [client, server, frozen, pubsub]
        self.commands_frozen = False
        self.stop = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            flow = [client, server, self.commands_frozen, False]
            self.flows.append(flow)
            threading.Thread(target=self.pump, args=(client, server, flow, False), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, flow, True), daemon=True).start()

    def pump(self, src, dst, flow, from_redis):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not from_redis and b"SUBSCRIBE" in data:
                    flow[3] = True
                if from_redis and flow[2] and not (flow[3] and self.commands_frozen):
                    continue  # frozen: swallowed
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self):
        for flow in self.flows:
            flow[2] = True

    def freeze_commands(self):
        self.commands_frozen = True
        self.freeze()

    def thaw(self):
        self.commands_frozen = False
        for flow in self.flows:
            flow[2] = False

    def close(self):
        self.stop.set()
        self.listener.close()
        for client, server, *_ in self.flows:
            client.close()
            server.close()


def rest(port, method, path, body=None):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Connection": "close"})
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None
    finally:
        conn.close()


class RedisEngineTest(unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer()
        bus = f'\n[bus]\nengine = "redis"\nredis = ["127.0.0.1:{self.redis.port}"]\nreply_timeout = "1s"\n'
        self.a = Supervisor(workers=2, tls=False, extra=bus)
        self.b = Supervisor(workers=2, tls=False, extra=bus)
        self.a.start()
        self.b.start()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.sock.close()
            except Exception:
                pass
        self.a.cleanup()
        self.b.cleanup()
        self.redis.cleanup()

    def ws(self, sup):
        c = WsClient(sup.http_port)
        self.clients.append(c)
        return c

    def kill_host(self, sup):
        """kill -9 of a supervisor and its workers: a whole host gone at once."""
        pids = list(sup.worker_pids().values())
        os.kill(sup.proc.pid, signal.SIGKILL)
        sup.proc.wait()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        sup.proc = None
        sup.log_file.close()

    def publish(self, sup, channel, data):
        status, body = rest(sup.http_port, "POST", "/v1/publish" + channel, data)
        self.assertEqual(status, 200, body)
        return body["position"]

    def test_a_publish_on_one_supervisor_reaches_subscribers_on_the_other(self):
        sub = self.ws(self.b)
        r = sub.command("subscribe", channel="/rooms/1")
        self.assertTrue(r["ok"], r)
        positions = [self.publish(self.a, "/rooms/1", {"n": i}) for i in range(1, 4)]
        got = [sub.next_message() for _ in range(3)]
        self.assertEqual([m["position"] for m in got], positions)
        self.assertEqual([m["data"]["n"] for m in got], [1, 2, 3])
        # The same position everywhere, from Redis.
        self.assertEqual(positions[0].split(".")[0], positions[2].split(".")[0])
        self.assertEqual([p.split(".")[1] for p in positions], ["1", "2", "3"])
        status, info = rest(self.b.http_port, "GET", "/v1/channels/rooms/1")
        self.assertEqual(info["position"], positions[-1])
        status, doc, _ = http_get(self.b.admin_port, "/v1/status")
        self.assertIn({"channel": "/rooms/1", "subscribers": 1}, json.loads(doc)["hub"]["top_channels"])
        # SSE and poll on B see A's publishes too.
        status, first = rest(self.b.http_port, "GET", "/v1/poll?channel=/rooms/1")
        self.assertEqual(status, 200)
        p4 = self.publish(self.a, "/rooms/1", {"n": 4})
        status, polled = rest(self.b.http_port, "GET", f"/v1/poll?channel=/rooms/1&cursor={first['cursor']}")
        self.assertEqual([m["position"] for m in polled["messages"]], [p4])

    def test_a_client_moves_to_the_other_supervisor_and_loses_nothing(self):
        sub = self.ws(self.a)
        sub.command("subscribe", channel="/move")
        for i in range(1, 4):
            self.publish(self.a, "/move", {"n": i})
        last = [sub.next_message() for _ in range(3)][-1]["position"]
        sub.close()
        missed = [self.publish(self.b, "/move", {"n": i}) for i in range(4, 7)]
        other = self.ws(self.b)
        r = other.command("subscribe", channel="/move", since=last)
        self.assertTrue(r["recovered"], r)
        self.assertEqual([m["position"] for m in r["messages"]], missed)
        after = self.publish(self.a, "/move", {"n": 7})
        self.assertEqual(other.next_message()["position"], after)

    def test_redis_away_answers_503_and_a_redis_that_lost_its_data_changes_the_epoch(self):
        sub = self.ws(self.b)
        sub.command("subscribe", channel="/r")
        before = self.publish(self.a, "/r", {"n": 1})
        self.assertEqual(sub.next_message()["position"], before)
        self.redis.kill()
        status, body = rest(self.a.http_port, "POST", "/v1/publish/r", {"n": 2})
        self.assertEqual(status, 503, body)
        self.assertEqual(body["error"]["code"], "unavailable")
        wait_for(lambda: self.a.status()["bus"]["degraded"], 10, what="status saying degraded")
        health = json.loads(http_get(self.a.admin_port, "/healthz")[1])
        self.assertEqual((health["status"], health["bus"]), ("degraded", "degraded"))
        metrics = http_get(self.a.admin_port, "/metrics")[1].decode()
        self.assertIn('dingo_bus_degraded{engine="redis"} 1', metrics)
        self.assertTrue(sub.command("ping")["ok"])  # connections stay open
        self.redis.start()  # empty: it lost everything
        wait_for(lambda: not self.a.status()["bus"]["degraded"] and not self.b.status()["bus"]["degraded"], 15,
                 what="both supervisors back on Redis")
        after = wait_for(lambda: (lambda r: r[1]["position"] if r[0] == 200 else None)(
            rest(self.a.http_port, "POST", "/v1/publish/r", {"n": 3})), 10, what="publishes working again")
        self.assertNotEqual(after.split(".")[0], before.split(".")[0])  # a new epoch
        self.assertEqual(after.split(".")[1], "1")
        # Never a silent jump into the new epoch: the subscriber is told to resume, and
        # resuming says what was lost.
        event = sub.next_message(timeout=10)
        self.assertEqual(event["event"], "reconnect", event)
        with self.assertRaises(Closed) as closed:
            sub.next_message(timeout=10)
        self.assertEqual(closed.exception.code, 1012)
        again = self.ws(self.b)
        r = again.command("subscribe", channel="/r", since=before)
        self.assertFalse(r["recovered"])
        self.assertEqual(r["position"], after)
        wait_for(lambda: sum(w["gaps"] for w in self.b.status()["workers"]) >= 1, 5, what="the gap counted")

    def test_a_pubsub_connection_killed_by_redis_is_repaired_without_a_gap(self):
        sub = self.ws(self.b)
        sub.command("subscribe", channel="/k")
        positions = [self.publish(self.a, "/k", {"n": 1})]
        self.assertEqual(sub.next_message()["position"], positions[0])
        killed = self.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
        self.assertEqual(int(killed), 2)  # both supervisors' (each listens for its liveness probe)
        positions += [self.publish(self.a, "/k", {"n": i}) for i in range(2, 6)]
        got = [sub.next_message(timeout=10)["position"] for _ in range(4)]
        self.assertEqual(got, positions[1:])  # in order, none twice, none lost
        self.publish(self.a, "/k", {"n": 6})
        self.assertEqual(sub.next_message()["data"]["n"], 6)
        with self.assertRaises(Exception):
            sub.next_message(timeout=0.5)  # and nothing more: no duplicate

    def test_a_message_that_does_not_follow_makes_its_subscribers_resume_exactly(self):
        sub = self.ws(self.b)
        sub.command("subscribe", channel="/g")
        p1 = self.publish(self.a, "/g", {"n": 1})
        self.assertEqual(sub.next_message()["position"], p1)
        # A message from nowhere, as if SEQ 2..4 had been lost between hosts.
        epoch = p1.split(".")[0]
        self.redis.cli("PUBLISH", "dingo:{/g}", f"{epoch}.5 " + '{"forged":true}')
        event = sub.next_message(timeout=10)
        self.assertEqual(event["event"], "reconnect", event)  # not the forged message
        again = self.ws(self.b)
        r = again.command("subscribe", channel="/g", since=p1)
        self.assertTrue(r["recovered"])  # history has everything: nothing was lost really
        self.assertEqual(r["messages"], [])
        self.assertEqual(r["position"], p1)

    def test_a_resume_that_cannot_be_exact_carries_only_the_current_position(self):
        """recovered:false says where the channel is now, and nothing else: a message at
        or before that position would reach the client twice. Live messages that arrive
        while the hub reads history for the resume (it holds them, and moves the answer
        past them) must not slip into such an answer: resumes from a lost epoch, many
        times, while another host publishes without pause."""
        watcher = self.ws(self.b)  # keeps the channel subscribed on host b
        watcher.command("subscribe", channel="/f")
        first = self.publish(self.a, "/f", {"n": 0})
        stop = threading.Event()

        def flood():
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", self.a.http_port, timeout=10)
            while not stop.is_set():
                conn.request("POST", "/v1/publish/f", body="1")
                conn.getresponse().read()
            conn.close()

        publisher = threading.Thread(target=flood, daemon=True)
        publisher.start()
        try:
            answers = []
            for _ in range(60):
                c = self.ws(self.b)
                r = c.command("subscribe", channel="/f", since="lostepoch0.7")
                self.assertTrue(r["ok"], r)
                answers.append((r["recovered"], r["position"], [m["position"] for m in r["messages"]]))
                c.sock.close()
        finally:
            stop.set()
            publisher.join()
        self.assertTrue(all(not recovered for recovered, _, _ in answers), answers)
        self.assertEqual([a for a in answers if a[2]], [], "recovered:false answers with messages")
        self.assertNotEqual(answers[-1][1], first)  # the flood went on during the resumes

    @contextlib.contextmanager
    def host_behind_a_proxy(self, channel, probe_interval):
        """A third host whose [bus] reaches Redis through a StallingProxy, with a
        WebSocket subscriber on `channel` that has had its first message (published on
        host a): yields (host, subscriber, proxy)."""
        proxy = StallingProxy(self.redis.port)
        bus = (f'\n[bus]\nengine = "redis"\nredis = ["127.0.0.1:{proxy.port}"]\nreply_timeout = "1s"\n'
               f'probe_interval = "{probe_interval}"\n')
        c = Supervisor(workers=1, tls=False, extra=bus)
        try:
            c.start()
            sub = self.ws(c)
            sub.command("subscribe", channel=channel)
            p1 = self.publish(self.a, channel, {"n": 1})
            self.assertEqual(sub.next_message()["position"], p1)
            yield c, sub, proxy
        finally:
            c.cleanup()
            proxy.close()

    def test_a_pubsub_connection_that_goes_silent_is_found_by_the_probe(self):
        with self.host_behind_a_proxy("/stall", "500ms") as (c, sub, proxy):
            proxy.freeze()  # both of C's connections: up, and silent
            missed = [self.publish(self.a, "/stall", {"n": i}) for i in (2, 3)]
            got = [sub.next_message(timeout=15)["position"] for _ in range(2)]
            self.assertEqual(got, missed)  # repaired in order, without the client noticing
            self.assertGreaterEqual(c.status()["hub"]["probe_failures"], 1)

    def test_a_channel_is_repaired_by_one_chain_of_retries_however_often_it_resubscribes(self):
        """While Redis answers no command, a host's repair read fails and is retried every
        200 ms. Each new subscription of the channel (here: its pub/sub connection killed
        three times meanwhile) replaces the repair under way; it never adds one, or the
        retries would pile up against a Redis that is already struggling."""
        with self.host_behind_a_proxy("/chain", "10s") as (c, sub, proxy):
            proxy.freeze_commands()
            for _ in range(3):
                time.sleep(0.7)
                self.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
            last_kill = time.time()
            missed = [self.publish(self.a, "/chain", {"n": i}) for i in (2, 3)]
            time.sleep(4)  # two or more retry rounds after the last resubscription
            proxy.thaw()
            got = [sub.next_message(timeout=15)["position"] for _ in range(2)]
            self.assertEqual(got, missed)  # repaired in order, without the client noticing
            # Right after a resubscription, the repair it replaced may log its last
            # failure beside the new one's first; from then on one chain retries alone.
            lines = [line for line in c.log().splitlines() if "repairing /chain after a reconnect" in line]
            utc = datetime.timezone.utc
            times = [datetime.datetime.fromisoformat(line[:23]).replace(tzinfo=utc).timestamp() for line in lines]
            settled = [t for t in times if t > last_kill + 1.0]
            self.assertGreaterEqual(len(settled), 2, "\n".join(lines))
            together = [t for t, u in zip(settled, settled[1:]) if u - t < 0.1]
            self.assertEqual(together, [], "retries less than 100 ms apart:\n" + "\n".join(lines))

    def test_channels_count_subscribers_on_every_host(self):
        on_b = [self.ws(self.b) for _ in range(2)]
        for c in on_b:
            c.command("subscribe", channel="/count")
        self.ws(self.a).command("subscribe", channel="/count")

        def subscribers(sup):
            return rest(sup.http_port, "GET", "/v1/channels/count")[1]["subscribers"]
        wait_for(lambda: subscribers(self.a) == 3 and subscribers(self.b) == 3, 10, what="3 subscribers on both")
        on_b[0].close()
        wait_for(lambda: subscribers(self.a) == 2, 10, what="a subscriber gone on B seen from A")
        # A host that dies stops counting by itself, once its counts expire.
        self.kill_host(self.b)
        wait_for(lambda: subscribers(self.a) == 1, 25, what="the dead host's subscribers forgotten")

    def test_a_supervisor_killed_does_not_stop_delivery_on_the_other(self):
        sub = self.ws(self.b)
        sub.command("subscribe", channel="/survive")
        self.kill_host(self.a)
        p = self.publish(self.b, "/survive", {"n": 1})
        self.assertEqual(sub.next_message()["position"], p)


class NodeRegistryTest(unittest.TestCase):
    """Each host registers its endpoints in Redis (supervisor/NodeRegistry.h); GET /v1/nodes
    on any host lists every live host's, and nsclient learns and forgets hosts through it."""

    # [nodes] heartbeat = "1s": an entry expires 5 s after it was last written.
    NODES = '[nodes]\nheartbeat = "1s"\nttl = "60s"\n'

    def setUp(self):
        self.redis = RedisServer()
        self.extra = (f'\n[bus]\nengine = "redis"\nredis = ["127.0.0.1:{self.redis.port}"]\nreply_timeout = "1s"\n'
                      + self.NODES)
        self.work = tempfile.mkdtemp(prefix="dingo-nodes-")
        self.db = os.path.join(self.work, "ns.db")
        self.hosts = []

    def tearDown(self):
        for h in self.hosts:
            h.cleanup()
        self.redis.cleanup()
        shutil.rmtree(self.work, ignore_errors=True)

    def host(self):
        h = Supervisor(workers=2, tls=True, extra=self.extra)
        self.hosts.append(h)
        h.start()
        return h

    @staticmethod
    def endpoints(*hosts):
        return {("127.0.0.1", port, tls) for h in hosts for port, tls in ((h.http_port, False), (h.tls_port, True))}

    @staticmethod
    def document(host):
        status, body, _ = http_get(host.http_port, "/v1/nodes")
        return body if status == 200 else None

    def listed(self, host):
        """The endpoints /v1/nodes lists on `host`, asked on four connections so that both
        workers answer; None while they disagree."""
        docs = {self.document(host) for _ in range(4)}
        if len(docs) != 1 or None in docs:
            return None
        return {(n["host"], n["port"], n["tls"]) for n in json.loads(docs.pop())["nodes"]}

    def kill9(self, host):
        pids = list(host.worker_pids().values())
        os.kill(host.proc.pid, signal.SIGKILL)
        host.proc.wait()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        host.proc = None
        host.log_file.close()

    def ns(self, *args, seed):
        r = subprocess.run([binary("dingo-nsclient"), "--db", self.db, "--ca", os.path.join(certs(), "ca.pem"),
                            "--server-name", "localhost", "--seed", f"127.0.0.1:{seed.tls_port}", *args, "--json"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def stored(self, seed):
        return {(c["host"], c["port"], c["tls"]) for c in self.ns("list", seed=seed)["candidates"]
                if c["source"] == "store"}

    def test_v1_nodes_on_either_host_lists_both_and_a_stopped_host_leaves_at_once(self):
        a, b = self.host(), self.host()
        both = self.endpoints(a, b)
        wait_for(lambda: self.listed(a) == both and self.listed(b) == both, 10, what="both hosts on both hosts")
        # The same document everywhere: same list, same version.
        self.assertEqual(self.document(a), self.document(b))
        doc = json.loads(self.document(a))
        self.assertEqual(doc["ttl_s"], 60)
        self.assertIsInstance(doc["version"], int)
        self.assertEqual(a.status()["hub"]["nodes"], 2)
        self.assertIn("dingo_hub_nodes 2", http_get(a.admin_port, "/metrics")[1].decode())
        self.assertEqual(self.redis.cli("HLEN", "dingo:{nodes}"), "2")
        self.assertGreater(int(self.redis.cli("PTTL", "dingo:{nodes}")), 0)  # an abandoned hash goes away

        # SIGTERM: B deletes its entry as it closes its listeners, well before the entry
        # (written at most 1 s before the signal, living 5 s) could expire.
        sent = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: self.redis.cli("HLEN", "dingo:{nodes}") == "1", 5, what="B's entry deleted")
        self.assertLess(time.monotonic() - sent, 3.5, "B's entry expired instead of being deleted")
        wait_for(lambda: self.listed(a) == self.endpoints(a), 5, what="B gone from A's list")
        self.assertNotEqual(json.loads(self.document(a))["version"], doc["version"])
        self.assertEqual(a.status()["hub"]["nodes"], 1)
        self.assertEqual(b.proc.wait(timeout=15), 0)

    def test_nsclient_learns_a_new_host_and_forgets_one_that_died(self):
        a = self.host()
        wait_for(lambda: self.listed(a) == self.endpoints(a), 10, what="A lists itself")
        first = self.ns("refresh", seed=a)
        self.assertEqual(first["nodes"], 2)
        self.assertEqual(self.stored(a), self.endpoints(a))

        b = self.host()
        wait_for(lambda: self.listed(a) == self.endpoints(a, b), 10, what="B on A's list")
        learned = self.ns("refresh", seed=a)  # through A: B is learned from A's list
        self.assertTrue(learned["changed"])
        self.assertNotEqual(learned["version"], first["version"])
        self.assertEqual(self.stored(a), self.endpoints(a, b))

        # kill -9: B cannot say goodbye; its entry expires 5 s after its last heartbeat.
        self.kill9(b)
        died = time.monotonic()
        time.sleep(1.5)
        self.assertEqual(self.listed(a), self.endpoints(a, b), "dropped before its entry expired")
        wait_for(lambda: self.listed(a) == self.endpoints(a), 15, what="the dead host dropped")
        self.assertGreater(time.monotonic() - died, 3.5)
        forgot = self.ns("refresh", seed=a)
        self.assertTrue(forgot["changed"])
        self.assertEqual(forgot["version"], first["version"])  # the same list as before B came
        self.assertEqual(self.stored(a), self.endpoints(a))

    def test_a_wildcard_listener_must_name_its_public_endpoints(self):
        path = os.path.join(self.work, "wild.toml")
        base = f'[[listen]]\naddress = "0.0.0.0:{free_port()}"\n{self.extra}'
        with open(path, "w") as f:
            f.write(base)
        r = subprocess.run([binary("dingo-supervisor"), "--check-config", path], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("listen[0].address", r.stderr)
        self.assertIn("[nodes] endpoints", r.stderr)
        with open(path, "w") as f:
            f.write(base.replace("[nodes]\n", '[nodes]\nendpoints = ["192.0.2.10:443"]\n'))
        r = subprocess.run([binary("dingo-supervisor"), "--check-config", path], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
