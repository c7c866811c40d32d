"""The packages: built with CPack, checked by lintian, installed on this machine with dpkg,
checked in place (files, the dingo user, directories, --check-config, man pages,
systemd-analyze verify, the supervisor under the unit's own privileges), upgraded over a
locally edited conffile, removed, and purged. Needs root; cleans up even when it fails.
"""
import glob
import json
import os
import pwd
import grp
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import BIN, SOURCE, http_get, wait_for

BUILD = os.environ.get("DINGO_BUILD", os.path.dirname(BIN))
BINARIES = ["dingo-supervisor", "dingo-gateway", "dingo-watchdog", "dingoctl"]
UNITS = ["dingo.service", "dingo-watchdog.service", "dingo.socket"]
CONF = "/etc/dingo/dingo.toml"


def run(*cmd, check=True, timeout=120, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def installed_version():
    r = run("dpkg-query", "-W", "-f=${Status} ${Version}", "dingo", check=False)
    if r.returncode != 0 or "install ok installed" not in r.stdout:
        return None
    return r.stdout.split()[-1]


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        return re.search(r"project\(dingo VERSION ([0-9.]+)", f.read()).group(1)


def repack(deb, version, workdir, conffile_extra):
    """The same package with another version and a changed packaged conffile: an upgrade."""
    tree = os.path.join(workdir, "tree")
    run("dpkg-deb", "-R", deb, tree)
    control = os.path.join(tree, "DEBIAN", "control")
    with open(control) as f:
        text = f.read()
    with open(control, "w") as f:
        f.write(re.sub(r"^Version: .*$", f"Version: {version}", text, flags=re.M))
    with open(os.path.join(tree, "etc", "dingo", "dingo.toml"), "a") as f:
        f.write(conffile_extra)
    out = os.path.join(workdir, f"dingo_{version}_amd64.deb")
    run("fakeroot", "dpkg-deb", "--root-owner-group", "-b", tree, out)
    return out


def free_low_port():
    for port in range(1023, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below 1024")


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class PackageTest(unittest.TestCase):
    """One install's life, in order: the methods are named test_1_..., test_2_..."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("not root: this test installs the .deb on this machine with dpkg "
                                    "and purges it (CI runs as root)")
        if installed_version() is not None:
            raise unittest.SkipTest("a dingo package is already installed on this machine; "
                                    "the test leaves it alone")
        for tool in ("dpkg-deb", "fakeroot", "lintian", "systemd-analyze", "man", "setpriv", "cpack"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} is missing: scripts/install-deps.sh installs it")
        cls.work = tempfile.mkdtemp(prefix="dingo-pkg-")
        cls.addClassCleanup(shutil.rmtree, cls.work, ignore_errors=True)
        cls.addClassCleanup(cls.purge_leftovers)
        cls.procs = []
        r = run("cpack", "-G", "DEB", cwd=BUILD, timeout=600)
        cls.debs = sorted(set(re.findall(r"package: (\S+\.deb) generated", r.stdout)))
        runtime = [d for d in cls.debs if os.path.basename(d).startswith("dingo_")]
        assert len(runtime) == 1, r.stdout
        cls.deb = runtime[0]
        cls.dev = [d for d in cls.debs if os.path.basename(d).startswith("dingo-dev_")]
        cls.version = project_version()
        cls.upgrade_version = cls.version + "+pkgtest1"
        cls.upgrade_deb = repack(cls.deb, cls.upgrade_version, cls.work,
                                 "\n# a line the next version added\n")

    @classmethod
    def purge_leftovers(cls):
        for p in cls.procs:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
        if installed_version() is not None or run("dpkg-query", "-W", "dingo", check=False).returncode == 0:
            run("dpkg", "--purge", "dingo", check=False)
        # A purge that failed must not leave the user behind for the next run.
        if run("getent", "passwd", "dingo", check=False).returncode == 0:
            run("deluser", "--system", "dingo", check=False)
        if run("getent", "group", "dingo", check=False).returncode == 0:
            run("delgroup", "--system", "dingo", check=False)

    # ---- the package files ----------------------------------------------------------

    def test_1_lintian_reports_no_errors_or_warnings(self):
        # Overrides shipped in the package (with their reasons in packaging/README.md)
        # are applied by lintian itself.
        r = run("lintian", "--no-tag-display-limit", *self.debs, check=False, timeout=300)
        tags = [line for line in r.stdout.splitlines() if re.match(r"^[EW]: ", line)]
        self.assertEqual(tags, [], r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_2_package_contents(self):
        files = run("dpkg-deb", "-c", self.deb).stdout
        paths = {line.split()[-1].lstrip(".") for line in files.splitlines()}
        for b in BINARIES:
            self.assertIn(f"/usr/bin/{b}", paths)
        for u in UNITS:
            self.assertIn(f"/lib/systemd/system/{u}", paths)
        for page in glob.glob(os.path.join(SOURCE, "man", "*.[1-8]")):
            name = os.path.basename(page)
            self.assertIn(f"/usr/share/man/man{name[-1]}/{name}.gz", paths)
        for p in (CONF, "/usr/lib/tmpfiles.d/dingo.conf", "/usr/libexec/dingo/dingo-watchdog-restart",
                  "/usr/share/doc/dingo/copyright", "/usr/share/doc/dingo/changelog.gz",
                  "/usr/share/doc/dingo/runbook.md", "/usr/share/doc/dingo/examples/reload.sh",
                  "/usr/share/dingo/prometheus/dingo.rules.yml", "/usr/share/dingo/grafana/dingo.json"):
            self.assertIn(p, paths)
        self.assertFalse([p for p in paths if p.startswith("/usr/local")])
        if os.path.exists(os.path.join(BIN, "dingo-nsclient")):
            self.assertIn("/usr/bin/dingo-nsclient", paths)
        control = run("dpkg-deb", "-f", self.deb, "Package", "Version", "Depends").stdout
        self.assertIn(f"Version: {self.version}", control)
        self.assertIn("adduser", control)
        ctrl = os.path.join(self.work, "ctrl")
        run("dpkg-deb", "-e", self.deb, ctrl)
        with open(os.path.join(ctrl, "conffiles")) as f:
            self.assertEqual(f.read().split(), [CONF])

    def test_3_dev_package(self):
        if not self.dev:
            self.skipTest("no dingo-dev package: nothing is installed with COMPONENT dev yet (nsclient/)")
        files = run("dpkg-deb", "-c", self.dev[0]).stdout
        self.assertRegex(files, r"\./usr/include/dingo/\S+\.h")
        self.assertRegex(files, r"\./usr/lib/\S*libdingo-nsclient\.a")
        self.assertRegex(files, r"\./usr/lib/\S*pkgconfig/dingo-nsclient\.pc")
        # A client program builds against the package's files alone, through pkg-config
        # (the .pc finds its prefix from where it lies, so an unpacked copy works).
        root = os.path.join(self.work, "devroot")
        run("dpkg-deb", "-x", self.dev[0], root)
        pc = glob.glob(os.path.join(root, "usr/lib/**/pkgconfig"), recursive=True)
        self.assertEqual(len(pc), 1)
        src = os.path.join(self.work, "client.cpp")
        with open(src, "w") as f:
            f.write("""
#include <dingo/nsclient/Backoff.h>
#include <dingo/nsclient/Resolver.h>
#include <dingo/nsclient/Store.h>
#include <dingo/nsclient/Subscriber.h>
#include <cstdio>
int main(int, char** argv) {
  dingo::ns::Store store(argv[1]);
  store.replaceNodes({{"192.0.2.7", 443, true}}, 1, 60, 1000);
  dingo::ns::Backoff backoff;
  auto d = backoff.nextDelay();
  std::printf("%zu %d\\n", store.listed().size(), d.count() >= 0 && d.count() <= 1000);
  return store.schemaVersion() == dingo::ns::Store::kSchemaVersion ? 0 : 1;
}
""")
        env = dict(os.environ, PKG_CONFIG_PATH=pc[0])
        flags = run("pkg-config", "--cflags", "--libs", "dingo-nsclient", env=env).stdout.split()
        self.assertTrue(any(f.startswith("-I" + root) for f in flags), flags)
        exe = os.path.join(self.work, "client")
        run("g++", "-std=c++20", "-o", exe, src, *flags)
        self.assertEqual(run(exe, os.path.join(self.work, "client.db")).stdout.strip(), "1 1")

    # ---- installed ------------------------------------------------------------------

    def test_4_install_puts_everything_in_place(self):
        run("dpkg", "-i", self.deb)
        self.assertEqual(installed_version(), self.version)
        for b in BINARIES:
            r = run(f"/usr/bin/{b}", "--version")
            self.assertIn(self.version, r.stdout)
        user = pwd.getpwnam("dingo")
        self.assertLess(user.pw_uid, 1000)
        self.assertIn(user.pw_shell, ("/usr/sbin/nologin", "/bin/false"))
        self.assertEqual(grp.getgrgid(user.pw_gid).gr_name, "dingo")
        for path, owner, group, mode in (("/run/dingo", "root", "dingo", 0o775),
                                         ("/var/lib/dingo", "dingo", "dingo", 0o750)):
            st = os.stat(path)
            self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                              st.st_mode & 0o7777), (owner, group, mode), path)
        r = run("/usr/bin/dingo-supervisor", "--check-config", CONF)
        self.assertEqual(r.stdout.strip(), f"{CONF}: ok")
        # Enabled as dh_installsystemd would: the service yes, the watchdog and socket no.
        self.assertTrue(os.path.islink("/etc/systemd/system/multi-user.target.wants/dingo.service"))
        self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/dingo-watchdog.service"))
        self.assertFalse(os.path.exists("/etc/systemd/system/sockets.target.wants/dingo.socket"))

    def test_5_installed_man_pages_render_without_warnings(self):
        pages = glob.glob("/usr/share/man/man*/dingo*.gz")
        self.assertGreaterEqual(len(pages), 6)
        env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat")
        for page in pages:
            r = run("man", "--warnings", "-l", page, env=env, check=False)
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)
            self.assertIn("NAME", r.stdout)
        for name in ("dingo", "dingo-supervisor", "dingoctl", "dingo.toml"):
            self.assertEqual(run("man", "-w", name, env=env, check=False).returncode, 0, name)

    def test_6_systemd_analyze_verify_accepts_the_units(self):
        r = run("systemd-analyze", "verify", *[f"/lib/systemd/system/{u}" for u in UNITS], check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual([l for l in (r.stdout + r.stderr).splitlines() if "dingo" in l], [],
                         r.stdout + r.stderr)

    def test_7_supervisor_runs_under_the_units_privileges(self):
        """As dingo.service starts it: root with the unit's capability bounding set and
        no_new_privs, a port below 1024, then dingo; an upgrade in place stays dingo."""
        with open("/lib/systemd/system/dingo.service") as f:
            unit = f.read()
        caps = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
        self.assertIn("NoNewPrivileges=yes", unit)
        bounding = "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
        d = tempfile.mkdtemp(prefix="dingo-pkg-run-", dir=self.work)
        os.chmod(self.work, 0o755)
        os.chmod(d, 0o755)  # the workers read the config as dingo
        port, admin = free_low_port(), None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            admin = s.getsockname()[1]
        tag = f"pkgtest-{os.getpid()}"
        control = f"/run/dingo/{tag}.sock"
        cfg = os.path.join(d, "dingo.toml")
        with open(cfg, "w") as f:
            f.write(f'[supervisor]\nworkers = 2\nuser = "dingo"\ncontrol_socket = "{control}"\n'
                    f'pid_file = "/run/dingo/{tag}.pid"\ndrain_timeout = "2s"\n'
                    f'[[listen]]\naddress = "127.0.0.1:{port}"\n[admin]\naddress = "127.0.0.1:{admin}"\n')
        os.chmod(cfg, 0o644)
        log = open(os.path.join(d, "log"), "wb")
        proc = subprocess.Popen(["setpriv", f"--bounding-set={bounding}", "--no-new-privs",
                                 "/usr/bin/dingo-supervisor", "--config", cfg],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc.pid)

        def status():
            r = run("/usr/bin/dingoctl", "--socket", control, "status", "--json", check=False)
            if r.returncode != 0:
                if proc.poll() is not None and not os.path.exists(control):
                    raise AssertionError(f"supervisor exited {proc.returncode}: {open(log.name).read()}")
                return None
            return json.loads(r.stdout)

        def ready(st):
            return st and st["workers"] and all(w["state"] == "ready" for w in st["workers"])

        dingo_uid = pwd.getpwnam("dingo").pw_uid
        try:
            st = wait_for(lambda: (lambda s: s if ready(s) else None)(status()), 15, what="workers ready")
            self.procs.extend(w["pid"] for w in st["workers"])
            self.assertEqual(uid_of(proc.pid), dingo_uid)
            for w in st["workers"]:
                self.assertEqual(uid_of(w["pid"]), dingo_uid)
            code, body, _ = http_get(port)
            self.assertEqual(code, 200, body)
            # The upgraded supervisor is dingo from the start: it must be able to write
            # its pid file and control socket into /run/dingo.
            r = run("/usr/bin/dingoctl", "--socket", control, "upgrade")
            new_pid = int(r.stdout.split()[-1])
            self.procs.append(new_pid)
            st = wait_for(lambda: (lambda s: s if ready(s) and s["pid"] == new_pid else None)(status()), 20,
                          what="the upgraded supervisor ready")
            self.procs.extend(w["pid"] for w in st["workers"])
            self.assertEqual(uid_of(new_pid), dingo_uid)
            with open(f"/run/dingo/{tag}.pid") as f:
                self.assertEqual(int(f.read()), new_pid)
            proc.wait(timeout=15)  # the old one drained out
            self.assertEqual(http_get(port)[0], 200)
            run("/usr/bin/dingoctl", "--socket", control, "stop")
            wait_for(lambda: not pid_alive(new_pid), 15, what="the supervisor stopped")
            self.assertFalse(os.path.exists(control))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for p in self.procs:
                if pid_alive(p):
                    os.kill(p, signal.SIGKILL)
            log.close()

    def test_8_upgrade_keeps_a_locally_edited_conffile(self):
        with open(CONF, "a") as f:
            f.write("\n# edited on this host\n")
        with open(CONF) as f:
            edited = f.read()
        run("dpkg", "-i", self.deb)  # reinstalling the same version: no question, edit kept
        with open(CONF) as f:
            self.assertEqual(f.read(), edited)
        # Both the admin and the new version changed the file: the admin's stays (confold,
        # as apt would be told on a host without a terminal), the new one lands beside it.
        r = run("dpkg", "--force-confdef", "--force-confold", "-i", self.upgrade_deb)
        self.assertEqual(installed_version(), self.upgrade_version, r.stdout)
        with open(CONF) as f:
            self.assertEqual(f.read(), edited)
        with open(CONF + ".dpkg-dist") as f:
            self.assertIn("a line the next version added", f.read())
        os.unlink(CONF + ".dpkg-dist")
        self.assertEqual(pwd.getpwnam("dingo").pw_name, "dingo")
        run("/usr/bin/dingo-supervisor", "--check-config", CONF)

    def test_9_remove_keeps_config_and_user_then_purge_removes_them(self):
        run("dpkg", "--remove", "dingo")
        self.assertFalse(os.path.exists("/usr/bin/dingo-supervisor"))
        self.assertFalse(os.path.exists("/lib/systemd/system/dingo.service"))
        self.assertTrue(os.path.exists(CONF))
        self.assertEqual(run("getent", "passwd", "dingo", check=False).returncode, 0)
        run("dpkg", "--purge", "dingo")
        self.assertIsNone(installed_version())
        for path in ("/etc/dingo", "/var/lib/dingo", "/run/dingo",
                     "/etc/systemd/system/multi-user.target.wants/dingo.service",
                     "/etc/systemd/system/dingo.service"):
            self.assertFalse(os.path.lexists(path), path)
        self.assertEqual(run("getent", "passwd", "dingo", check=False).returncode, 2)
        self.assertEqual(run("getent", "group", "dingo", check=False).returncode, 2)
        leftovers = glob.glob("/var/lib/systemd/deb-systemd-helper-*/**/*dingo*", recursive=True)
        self.assertEqual(leftovers, [])


class WatchdogRestartScriptTest(unittest.TestCase):
    """packaging/dingo-watchdog-restart against a fake systemctl: restart only what
    systemd is not already handling, never start what an admin stopped."""

    def calls(self, state):
        d = tempfile.mkdtemp(prefix="dingo-wdr-")
        try:
            fake = os.path.join(d, "systemctl")
            log = os.path.join(d, "calls")
            with open(fake, "w") as f:
                f.write(f'#!/bin/sh\necho "$*" >> {log}\n'
                        f'[ "$1" = is-active ] && {{ echo {state}; [ {state} = active ]; exit; }}\nexit 0\n')
            os.chmod(fake, 0o755)
            r = subprocess.run([os.path.join(SOURCE, "packaging", "dingo-watchdog-restart")],
                               env=dict(os.environ, SYSTEMCTL=fake), capture_output=True, text=True,
                               timeout=10)
            with open(log) as f:
                return r.returncode, f.read().splitlines()[1:]  # after is-active
        finally:
            shutil.rmtree(d)

    def test_each_state(self):
        self.assertEqual(self.calls("active"), (0, ["restart dingo.service"]))
        self.assertEqual(self.calls("reloading"), (0, ["restart dingo.service"]))
        self.assertEqual(self.calls("activating"), (0, []))
        self.assertEqual(self.calls("deactivating"), (0, []))
        self.assertEqual(self.calls("inactive"), (0, []))
        self.assertEqual(self.calls("failed"), (0, ["reset-failed dingo.service", "start dingo.service"]))
        self.assertEqual(self.calls("unknown-state")[0], 1)


if __name__ == "__main__":
    unittest.main()
