"""Hosts as network namespaces, for the tests and benchmarks that need several machines.

Each host is a network namespace (`ip netns`) with its own loopback and one veth pair
whose other end is a port of a bridge in the root namespace. The bridge has the
network's first address, so the test process (in the root namespace) reaches every host,
and the hosts reach one another through the bridge, as machines on one switch.

Addresses: a run takes one /24 of 10.213.0.0/16 (private, RFC 1918), the first not used
by any interface of the machine (two runs at once get two networks): the bridge is
10.213.N.1, hosts 10.213.N.11, .12, ... in the order they are added. The tests' rule
"loopback addresses only" is relaxed for these addresses, and only them: they exist
only on this machine, inside the run's namespaces and its bridge.

Names carry the owning process's id: namespaces `dingo-net-PID-HOST`, interfaces
`dgPIDbr` (the bridge) and `dgPIDhN` (a host's veth end in the root namespace; the
host's own end is `eth0`). A run that crashed leaves them behind: the next Network
removes every one whose process is gone (killing what still runs inside its
namespaces) before it makes its own. `close()` removes its own; it is safe to call
twice and runs at interpreter exit too.

Processes run in a host with `host.popen([...])` (`ip netns exec NS ...`, which execs:
the pid is the program's). `host.link(False)` takes the host's link down (the cable
pulled: nothing in or out, connections stay), `host.link(True)` puts it back.

Root and `ip netns` are needed: `unavailable()` says why not, for a clean skip.
"""
import atexit
import fcntl
import ipaddress
import os
import re
import signal
import subprocess
import time

SUPERNET = ipaddress.ip_network("10.213.0.0/16")
LOCK = "/tmp/dingo-netns.lock"
_NS = re.compile(r"^dingo-net-(\d+)-\S+")
_LINK = re.compile(r"^dg(\d+)(br|h\d+)$")


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def unavailable():
    """None when namespaces can be made here, else why not (for unittest.skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    name = f"dingo-net-{os.getpid()}-probe"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    r = subprocess.run(["ip", "link", "add", f"dg{os.getpid()}br", "type", "bridge"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a bridge here: {r.stderr.strip()}"
    subprocess.run(["ip", "link", "del", f"dg{os.getpid()}br"], capture_output=True)
    return None


def clean_stale():
    """Removes the namespaces and interfaces of runs whose process is gone."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS.match(name)
        if m and not _alive(int(m.group(1))):
            _remove_namespace(name)
    for line in ip("-o", "link", "show").splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _LINK.match(name)
        if m and not _alive(int(m.group(1))):
            ip("link", "del", name, check=False)


def _remove_namespace(name):
    """Kills what runs in the namespace (processes a run of ours started), then removes it."""
    for _ in range(3):
        pids = [int(p) for p in ip("netns", "pids", name, check=False).split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    ip("netns", "del", name, check=False)


class Host:
    def __init__(self, network, name, index, address):
        self.network = network
        self.name = name
        self.ns = f"dingo-net-{os.getpid()}-{name}"
        self.veth = f"dg{os.getpid()}h{index}"
        self.address = address

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def popen(self, args, **kw):
        return subprocess.Popen(self.exec_prefix() + list(args), **kw)

    def run(self, args, **kw):
        return subprocess.run(self.exec_prefix() + list(args), **kw)

    def link(self, up):
        """Takes the host's link down (up=False) or back up: its cable, pulled or not."""
        ip("link", "set", self.veth, "up" if up else "down")


class Network:
    def __init__(self):
        self.hosts = {}
        self.closed = False
        self.bridge = f"dg{os.getpid()}br"
        clean_stale()
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = set()
            for line in ip("-o", "-4", "addr", "show").splitlines():
                m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", line)
                if m and ipaddress.ip_address(m.group(1)) in SUPERNET:
                    used.add(ipaddress.ip_network(m.group(1) + "/24", strict=False))
            self.subnet = next(n for n in SUPERNET.subnets(new_prefix=24) if n not in used)
            self.gateway = str(self.subnet.network_address + 1)
            atexit.register(self.close)
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")

    def add(self, name):
        """A new host named `name` (a-z0-9, short), with the next address."""
        index = len(self.hosts)
        address = str(self.subnet.network_address + 11 + index)
        host = Host(self, name, index, address)
        ip("netns", "add", host.ns)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        ip("link", "set", host.veth, "master", self.bridge)
        ip("link", "set", host.veth, "up")
        host.run(["ip", "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
        host.run(["ip", "link", "set", "eth0", "up"], check=True)
        host.run(["ip", "link", "set", "lo", "up"], check=True)
        self.hosts[name] = host
        return host

    def close(self):
        if self.closed:
            return
        self.closed = True
        for host in self.hosts.values():
            _remove_namespace(host.ns)
            ip("link", "del", host.veth, check=False)
        ip("link", "del", self.bridge, check=False)
