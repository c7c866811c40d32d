"""Man pages render without warnings and document every option each binary's --help prints."""
import glob
import os
import re
import subprocess
import unittest

from harness import SOURCE, Supervisor, binary, wait_for

MAN = os.path.join(SOURCE, "man")
# Every man page source: man/NAME.SECTION (the package installs the same glob).
MAN_PAGES = sorted(glob.glob(os.path.join(MAN, "*.[1-8]")))
# Programs whose --help the man pages must cover. dingo-nsclient is checked once it is
# built; until then only it is skipped, and the test output says so.
PROGRAMS = ["dingo-supervisor", "dingo-gateway", "dingo-watchdog", "dingoctl", "dingo-nsclient"]
OPTIONAL = {"dingo-nsclient"}


def page_of(program):
    found = [p for p in MAN_PAGES if re.fullmatch(re.escape(program) + r"\.[1-8]", os.path.basename(p))]
    return os.path.basename(found[0]) if found else None


def subcommands(help_text):
    """The subcommands a CLI11 --help lists under "Subcommands:"."""
    if "Subcommands:" not in help_text:
        return []
    return re.findall(r"^  ([a-z][a-z0-9-]*)\s", help_text.split("Subcommands:", 1)[1], re.M)


# A whole option token: `--listen` is not found inside `--listen-tls` or `--listen_x`.
OPTION = r"(?<![\w-])(--[a-z][a-z0-9-]*)(?![\w-])"


def help_options(text):
    return set(re.findall(OPTION, text))


def man_text(page):
    # groff escapes dashes as \- and switches fonts with \fB, \f(CW, \f[CR]; compare on
    # plain text, so that "\fB\-\-listen\fR" reads "--listen".
    with open(os.path.join(MAN, page)) as f:
        text = f.read().replace("\\-", "-")
    return re.sub(r"\\f(?:\[[^\]]*\]|\(..|.)", "", text)


def man_options(text):
    return set(re.findall(OPTION, text))


class ManPagesTest(unittest.TestCase):
    def test_pages_render_cleanly(self):
        self.assertEqual(sorted(os.listdir(MAN)), sorted(os.path.basename(p) for p in MAN_PAGES),
                         "man/ holds only NAME.SECTION page sources")
        for page in MAN_PAGES:
            r = subprocess.run(["groff", "-man", "-ww", "-z", page],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, page)
            self.assertEqual(r.stderr, "", f"{page}: {r.stderr}")
            # man -l, as a reader sees it (man-db passes --warnings on to groff).
            r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                               timeout=30, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat"))
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)

    def test_every_program_and_the_overview_have_a_page(self):
        for program in PROGRAMS:
            if program in OPTIONAL and not os.path.exists(binary(program)):
                continue
            self.assertIsNotNone(page_of(program), program)
        self.assertTrue(os.path.exists(os.path.join(MAN, "dingo.7")))
        self.assertTrue(os.path.exists(os.path.join(MAN, "dingo.toml.5")))

    def test_every_help_option_is_in_the_man_page(self):
        for b in PROGRAMS:
            if not os.path.exists(binary(b)):
                if b in OPTIONAL:
                    print(f"\n  {b}: not built yet, its --help is not checked against its man page")
                    continue
                self.fail(f"{binary(b)} is missing")
            page = page_of(b)
            self.assertIsNotNone(page, f"no man page for {b}")
            out = subprocess.run([binary(b), "--help"], capture_output=True, text=True, timeout=10).stdout
            subs = subcommands(out)
            for sub in subs:
                out += subprocess.run([binary(b), sub, "--help"], capture_output=True, text=True,
                                      timeout=10).stdout
            text = man_text(page)
            missing = sorted(help_options(out) - man_options(text))
            self.assertEqual(missing, [], f"{page} lacks options printed by {b} --help")
            missing = sorted(sub for sub in subs
                             if not re.search(rf"^\.B[IR]? {re.escape(sub)}(?![\w-])", text, re.M))
            self.assertEqual(missing, [], f"{page} lacks subcommands printed by {b} --help")

    def test_every_config_key_is_in_dingo_toml_5(self):
        with open(os.path.join(SOURCE, "core", "Config.cpp")) as f:
            src = f.read()
        keys = set(re.findall(r'r\.(?:str|boolean|integer|duration|size|strings)\("([a-z_]+)"', src))
        keys |= {"dispatch", "min_version", "max_version"}
        text = man_text("dingo.toml.5")
        missing = sorted(k for k in keys if not re.search(rf"\.B {k}(?![\w-])", text))
        self.assertEqual(missing, [])


class PackagedDocsTest(unittest.TestCase):
    def test_packaged_config_is_valid_and_uses_run_dingo(self):
        path = os.path.join(SOURCE, "packaging", "dingo.toml")
        r = subprocess.run([binary("dingo-supervisor"), "--check-config", path],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(path) as f:
            text = f.read()
        self.assertIn('control_socket = "/run/dingo/control.sock"', text)
        self.assertIn('pid_file = "/run/dingo/supervisor.pid"', text)
        self.assertIn('user = "dingo"', text)

    def test_units_point_at_pages_that_exist(self):
        pages = {os.path.basename(p) for p in MAN_PAGES}
        for unit in glob.glob(os.path.join(SOURCE, "packaging", "systemd", "*")):
            with open(unit) as f:
                for name, section in re.findall(r"man:([\w.-]+)\((\d)\)", f.read()):
                    if name == "dingo-nsclient" and not os.path.exists(binary(name)):
                        continue
                    self.assertIn(f"{name}.{section}", pages, unit)

    def test_runbook_has_every_procedure(self):
        with open(os.path.join(SOURCE, "docs", "runbook.md")) as f:
            headings = [h.lower() for h in re.findall(r"^## (.+)$", f.read(), re.M)]
        for want in ("deploy", "reload", "upgrade the binary with no downtime", "drain and replace",
                     "investigate a suspect worker", "react to a watchdog alert", "rotate tls",
                     "fail clients over to the backup domain", "jq", "rotate jwt keys", "disconnect a user",
                     "alerts and the grafana board"):
            self.assertTrue(any(want in h for h in headings), f"runbook lacks a '{want}' procedure")

    def test_runbook_examples_exist(self):
        with open(os.path.join(SOURCE, "docs", "runbook.md")) as f:
            text = f.read()
        for script in re.findall(r"examples/([\w.-]+)", text):
            self.assertTrue(os.path.exists(os.path.join(SOURCE, "packaging", "examples", script)), script)


class ExampleScriptsTest(unittest.TestCase):
    """packaging/examples/, the runbook's procedures as scripts, against a real supervisor."""

    def test_status_reload_drain_upgrade(self):
        sup = Supervisor(workers=2, tls=False).start()
        try:
            env = dict(os.environ, DINGO_CONFIG=sup.config, DINGOCTL=binary("dingoctl"),
                       SUPERVISOR=binary("dingo-supervisor"))
            examples = os.path.join(SOURCE, "packaging", "examples")

            def script(*args):
                r = subprocess.run([os.path.join(examples, args[0]), *args[1:]], env=env,
                                   capture_output=True, text=True, timeout=90)
                self.assertEqual(r.returncode, 0, f"{args}: {r.stdout}{r.stderr}\n{sup.log()}")
                return r.stdout

            self.assertRegex(script("status.sh"), r"worker 1 pid \d+ ready")
            self.assertIn("reloaded: generation 2", script("reload.sh"))
            self.assertRegex(script("drain-worker.sh", "0"), r"worker 0: pid \d+ -> \d+, ready")
            out = script("upgrade.sh")
            new_pid = int(re.search(r"-> (\d+) ", out).group(1))
            self.assertEqual(sup.status()["pid"], new_pid)
            sup.proc.wait(timeout=15)  # the old supervisor drained out
            sup.ctl("stop")
            wait_for(lambda: not os.path.exists(f"/proc/{new_pid}"), 15, what="the supervisor stopped")
        finally:
            for pid in [p for p in (locals().get("new_pid"),) if p]:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
