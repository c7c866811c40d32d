"""Helpers for the integration tests: real dingo binaries on loopback ports."""
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("DINGO_SOURCE", os.path.abspath(os.path.join(HERE, "..", "..")))
BIN = os.environ.get("DINGO_BIN", os.path.join(SOURCE, "build", "bin"))


# Set by tests/sanitized.sh when the binaries are build-asan's (ASan, UBSan, LSan).
SANITIZED = os.environ.get("DINGO_SANITIZED") == "1"


def release_only(reason):
    """Skips a test in the sanitizer tree: for budgets (memory, time) that ASan changes."""
    import unittest
    return unittest.skipIf(SANITIZED, f"not under sanitizers: {reason}")


def binary(name):
    return os.path.join(BIN, name)


# Per user: only one user's SO_REUSEPORT listeners can share a port.
_PORT_CLAIMS = os.path.join(tempfile.gettempdir(), f"dingo-test-ports-{os.getuid()}.lock")
_port_claims = None    # that file, open for this process's life: its byte locks claim ports
_ports_claimed = set()


def free_port():
    """A loopback port nobody listens on, handed out once among all the test processes
    on this machine. The kernel may give a port it just gave again, to this process or to
    a suite running beside it, and SO_REUSEPORT listeners of one user share a port
    without a word (two [[listen]] tables on one port would split each other's
    connections). So each port handed out is claimed with a lock on byte PORT of one
    file, held until this process exits; a port another live process claims is skipped.
    (POSIX record locks: the file stays open, as closing it would drop them all.)"""
    global _port_claims
    if _port_claims is None:
        _port_claims = open(_PORT_CLAIMS, "a")
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _ports_claimed:
            continue
        try:
            fcntl.lockf(_port_claims, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            continue  # another test process holds it
        _ports_claimed.add(port)
        return port


_certs = None


def certs():
    """A development CA and ECDSA + RSA server certificates, made once per test process."""
    global _certs
    if _certs is None:
        d = tempfile.mkdtemp(prefix="dingo-certs-")
        subprocess.run([os.path.join(SOURCE, "scripts", "dev-cert.sh"), d], check=True,
                       stdout=subprocess.DEVNULL)
        _certs = d
    return _certs


# ASan and UBSan make the binaries 2-3 times slower: waits for a condition last longer.
# Only waits: deadlines the binaries enforce are what the tests measure.
WAIT_SCALE = 3 if SANITIZED else 1


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    timeout *= WAIT_SCALE
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError, http.client.HTTPException) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_get(port, path="/healthz", host="127.0.0.1", timeout=5, headers=None, source=None):
    """One request on a fresh connection; returns (status, body bytes, headers)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def healthz_worker(port, **kw):
    status, body, _ = http_get(port, "/healthz", **kw)
    assert status == 200, (status, body)
    return json.loads(body)


class Supervisor:
    """A dingo-supervisor on free loopback ports, in a temporary folder. `host` (a
    netns.Host) runs it in that network namespace, listening on the host's address."""

    def __init__(self, workers=2, dispatch="round-robin", tls=True, supervisor_extra="",
                 gateway_extra="", extra="", host=None):
        self.dir = tempfile.mkdtemp(prefix="dingo-it-")
        self.host = host
        self.address = host.address if host else "127.0.0.1"
        self.workers = workers
        self.http_port = free_port()
        self.tls_port = free_port() if tls else None
        self.admin_port = free_port()
        self.control = os.path.join(self.dir, "control.sock")
        self.pid_file = os.path.join(self.dir, "supervisor.pid")
        c = certs()
        cfg = f"""
[supervisor]
workers = {workers}
dispatch = "{dispatch}"
control_socket = "control.sock"
pid_file = "supervisor.pid"
drain_timeout = "5s"
{supervisor_extra}

[[listen]]
address = "{self.address}:{self.http_port}"
"""
        if tls:
            cfg += f"""
[[listen]]
address = "{self.address}:{self.tls_port}"
tls = true

[tls]
cert = ["{c}/cert.pem", "{c}/rsa-cert.pem"]
key = ["{c}/key.pem", "{c}/rsa-key.pem"]
"""
        cfg += f"""
[admin]
address = "{self.address}:{self.admin_port}"

[gateway]
{gateway_extra}
{extra}
"""
        self.config = os.path.join(self.dir, "dingo.toml")
        with open(self.config, "w") as f:
            f.write(cfg)
        self.log_path = os.path.join(self.dir, "supervisor.log")
        self.proc = None

    def start(self, wait=True):
        self.log_file = open(self.log_path, "wb")
        prefix = self.host.exec_prefix() if self.host else []
        self.proc = subprocess.Popen(prefix + [binary("dingo-supervisor"), "--config", self.config],
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited {self.proc.returncode}:\n{self.log()}")
            st = self.status()
            return st if sum(w["state"] == "ready" for w in st["workers"]) == self.workers else None
        return wait_for(ready, timeout, what="all workers ready")

    def ctl(self, *args, timeout=10):
        return subprocess.run([binary("dingoctl"), "--socket", self.control, *args],
                              capture_output=True, text=True, timeout=timeout)

    def status(self):
        r = self.ctl("status", "--json")
        if r.returncode != 0:
            raise ValueError(f"dingoctl status: {r.returncode} {r.stderr}")
        return json.loads(r.stdout)

    def worker_pids(self):
        return {w["id"]: w["pid"] for w in self.status()["workers"] if w["pid"] > 0}

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        pids = []
        if self.proc.poll() is None:
            try:
                pids = list(self.worker_pids().values())
            except Exception:
                pass
            terminate(self.proc)
        for pid in pids:  # never leave a worker behind, whatever happened
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log_file.close()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def terminate(proc, timeout=10):
    """SIGTERM, then SIGKILL if the process is still there after `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def count_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# ---- Prometheus text exposition format ------------------------------------------------

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_labels(line, i):
    """Labels from line[i] (just after "{") to the closing "}": (dict, index after "}")."""
    labels = {}
    while True:
        if line[i] == "}":
            return labels, i + 1
        m = _LABEL_NAME.match(line, i)
        if not m or line[m.end():m.end() + 2] != '="':
            raise ValueError(f"bad label at column {i}: {line!r}")
        name, i = m.group(0), m.end() + 2
        value = []
        while line[i] != '"':
            if line[i] == "\\":
                i += 1
                value.append({"n": "\n", "\\": "\\", '"': '"'}[line[i]])
            else:
                value.append(line[i])
            i += 1
        if name in labels:
            raise ValueError(f"label {name} twice: {line!r}")
        labels[name] = "".join(value)
        i += 1
        if line[i] == ",":
            i += 1


def parse_metrics(text):
    """Parses Prometheus text format 0.0.4. Returns (families, samples): families maps a
    family name to {"type": T, "help": H}; samples is a list of (name, labels, value) in
    the order they appear. Raises ValueError on a line it cannot read."""
    families, samples = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = families.setdefault(parts[2], {})
                fam[parts[1].lower()] = parts[3] if len(parts) > 3 else ""
            continue
        m = _METRIC_NAME.match(line)
        if not m:
            raise ValueError(f"bad sample line: {line!r}")
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i + 1)
        fields = line[i:].split()
        if len(fields) not in (1, 2):
            raise ValueError(f"bad sample line: {line!r}")
        samples.append((name, labels, float(fields[0])))
    return families, samples


def family_of(sample_name, families):
    """The family a sample belongs to (histograms and summaries add suffixes)."""
    if sample_name in families:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if sample_name.endswith(suffix) and sample_name[:-len(suffix)] in families:
            return sample_name[:-len(suffix)]
    return None


def metrics_problems(text):
    """What a Prometheus server would reject or a reader would be misled by, and that
    `promtool check metrics` lets through: a series (name and label set) given twice,
    a family announced by HELP/TYPE with no series, and a sample of no announced family."""
    families, samples = parse_metrics(text)
    problems = []
    seen = {}
    for name, labels, value in samples:
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            problems.append(f"duplicate series {name}{labels} (values {seen[key]} and {value})")
        seen[key] = value
    with_series = {family_of(name, families) for name, _, _ in samples}
    for fam in families:
        if fam not in with_series:
            problems.append(f"family {fam} has HELP/TYPE but no series")
    for name, labels, _ in samples:
        if family_of(name, families) is None:
            problems.append(f"sample {name}{labels} has no HELP/TYPE")
    return problems


def series(text, name, **labels):
    """The samples of metric `name` whose labels include `labels`: [(labels, value)]."""
    _, samples = parse_metrics(text)
    want = {k: str(v) for k, v in labels.items()}
    return [(l, v) for n, l, v in samples if n == name and all(l.get(k) == x for k, x in want.items())]


def promtool_check(text):
    """`promtool check metrics` on `text`: (ok, output)."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode() if isinstance(text, str) else text,
                       capture_output=True, timeout=30)
    return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
