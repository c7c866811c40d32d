"""Every binary: --help, --version, usage errors exit 2; dingoctl exits 3 with no supervisor."""
import subprocess
import tempfile
import os
import unittest

from harness import binary

BINARIES = ["dingo-supervisor", "dingo-gateway", "dingoctl", "dingo-watchdog"]


class CliTest(unittest.TestCase):
    def run_bin(self, *args):
        return subprocess.run([binary(args[0]), *args[1:]], capture_output=True, text=True, timeout=10)

    def test_help_and_version(self):
        for b in BINARIES:
            r = self.run_bin(b, "--help")
            self.assertEqual(r.returncode, 0, b)
            self.assertIn("--version", r.stdout)
            r = self.run_bin(b, "--version")
            self.assertEqual(r.returncode, 0, b)
            self.assertRegex(r.stdout, rf"^{b} \d+\.\d+\.\d+\n$")

    def test_unknown_option_is_usage_error(self):
        for b in BINARIES:
            r = self.run_bin(b, "--no-such-option")
            self.assertEqual(r.returncode, 2, b)

    def test_dingoctl_without_a_supervisor_exits_3(self):
        sock = os.path.join(tempfile.mkdtemp(), "control.sock")
        for cmd in (["status"], ["status", "--json"], ["metrics"], ["stop"]):
            r = self.run_bin("dingoctl", "--socket", sock, *cmd)
            self.assertEqual(r.returncode, 3, cmd)
            self.assertIn("cannot reach the supervisor", r.stderr)

    def test_dingoctl_needs_a_command(self):
        r = self.run_bin("dingoctl")
        self.assertEqual(r.returncode, 2)

    def test_dingoctl_bad_drain_duration(self):
        r = self.run_bin("dingoctl", "--socket", "/nonexistent.sock", "stop", "--drain", "soon")
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
