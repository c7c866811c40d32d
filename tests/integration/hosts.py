"""Two dingo hosts and their Redis, each in a network namespace of its own (netns.py):
host `a` and host `b` run a dingo-supervisor each ([bus] engine = "redis"), host `redis`
runs redis-server on its own address. Used by test_redis_hosts.py and bench/chaos_bench.py.

The bus is pluggable: anything with `bus_config()` (the [bus] keys naming it), `start()`,
`kill()` (kill -9 of a node at random), `restart()` (what was killed, again), `cli(...)`
and `close()` can stand in for `RedisNode` (a Redis Cluster, when the engine has one).

Clients run in the test's own (root) namespace and reach the hosts over the bridge, as
clients on the network would; publishing from there needs the publish token
(`TOKEN`), since only loopback peers publish without one.
"""
import os
import shutil
import signal
import subprocess
import tempfile

from harness import Supervisor, wait_for
from netns import Network

TOKEN = "hosts-test-token"
# Timeouts short enough that a fault is found in a second or two, and a quiet client
# connection hears from the server every 2 s at most (WebSocket ping, SSE heartbeat,
# poll timeout), so that traffic.py's clients can take 10 s of silence as a dead host.
GATEWAY = f"""publish_token = "{TOKEN}"
ping_interval = "2s"
pong_timeout = "5s"
sse_heartbeat = "2s"
poll_timeout = "2s"
"""


class RedisNode:
    """One redis-server on its host. persistence=False: it loses everything when killed
    (the epoch must change); "aof": appendfsync always, so a kill -9 loses nothing
    acknowledged."""

    def __init__(self, host, port=6379, persistence=False):
        self.host = host
        self.port = port
        self.persistence = persistence
        self.dir = tempfile.mkdtemp(prefix="dingo-redis-")
        self.proc = None
        self.kills = 0

    def bus_config(self):
        return f'redis = ["{self.host.address}:{self.port}"]\n'

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", self.host.address, "--save", "",
                "--dir", self.dir, "--protected-mode", "no"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistence else ["--appendonly", "no"]
        self.proc = self.host.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.cli("PING") == "PONG", 10, what="redis-server up")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-h", self.host.address, "-p", str(self.port), *args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.kills += 1

    def restart(self):
        self.kill()
        self.start()

    def close(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Hosts:
    def __init__(self, workers=2, bus_extra='reply_timeout = "1s"\nprobe_interval = "1s"\n', persistence=False,
                 bus_factory=None, history_size=1000):
        self.net = Network()
        self.supervisors = []
        try:
            self.a = self.net.add("a")
            self.b = self.net.add("b")
            self.redis_host = self.net.add("redis")
            self.bus = (bus_factory or (lambda h: RedisNode(h, persistence=persistence)))(self.redis_host)
            self.bus.start()
            bus = (f'\n[bus]\nengine = "redis"\n{self.bus.bus_config()}{bus_extra}'
                   f'\n[history]\nsize = {history_size}\n')
            for host in (self.a, self.b):
                self.supervisors.append(Supervisor(workers=workers, tls=False, extra=bus, gateway_extra=GATEWAY,
                                                   host=host))
            for s in self.supervisors:
                s.start()
        except BaseException:
            self.close()
            raise

    def endpoint(self, i):
        s = self.supervisors[i]
        return (s.address, s.http_port)

    def endpoints(self, first=0):
        """Every host's endpoint, `first` first (where a client connects before others)."""
        n = len(self.supervisors)
        return [self.endpoint((first + k) % n) for k in range(n)]

    def kill_supervisor(self, i):
        """kill -9 of the supervisor alone: its workers go on and wait to be adopted."""
        s = self.supervisors[i]
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s.log_file.close()
        s.proc = None

    def restart_supervisor(self, i):
        """A new supervisor with the same config, as the external watchdog would start;
        the old one's workers re-attach to it."""
        s = self.supervisors[i]
        if s.proc is not None:
            self.kill_supervisor(i)
        log = s.log_path
        os.rename(log, log + f".{os.getpid()}.{len(os.listdir(s.dir))}")  # keep what the dead one said
        s.start(wait=False)
        s.wait_ready(20)

    def kill_host(self, i):
        """The whole host: its supervisor and every worker, kill -9."""
        s = self.supervisors[i]
        pids = list(s.worker_pids().values())
        self.kill_supervisor(i)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self):
        for s in self.supervisors:
            try:
                s.cleanup()
            except Exception:
                pass
        if hasattr(self, "bus"):
            self.bus.close()
        self.net.close()
