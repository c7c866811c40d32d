"""Configuration errors name the file, the line and the key, and exit 2."""
import os
import subprocess
import tempfile
import unittest

from harness import binary, certs


def write(text):
    fd, path = tempfile.mkstemp(prefix="dingo-cfg-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class CheckConfigTest(unittest.TestCase):
    def check(self, text):
        path = write(text)
        r = subprocess.run([binary("dingo-supervisor"), "--check-config", path],
                           capture_output=True, text=True, timeout=10)
        return path, r

    def test_empty_file_is_valid(self):
        path, r = self.check("")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), f"{path}: ok")

    def test_errors_name_file_line_and_key(self):
        cases = [
            ("[supervisor]\nworkers = 2\ndispatch = \"fastest\"\n", 3, "supervisor.dispatch"),
            ("[gateway]\nidle_timeout = \"forever\"\n", 2, "gateway.idle_timeout"),
            ("[[listen]]\naddress = \"127.0.0.1:8080\"\ntsl = true\n", 3, "listen[0].tsl"),
            ("[admin]\naddress = \"nowhere\"\n", 1, "admin.address"),
        ]
        for text, line, key in cases:
            path, r = self.check(text)
            self.assertEqual(r.returncode, 2, text)
            self.assertIn(f"{path}:{line}: key '{key}'", r.stderr)

    def test_syntax_error_names_the_line(self):
        path, r = self.check("[supervisor]\nworkers = 2\nworkers = 3\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"{path}:3:", r.stderr)

    def test_bad_certificate_is_a_config_error(self):
        c = certs()
        path, r = self.check(f'[[listen]]\naddress = "127.0.0.1:8443"\ntls = true\n[tls]\n'
                             f'cert = "{c}/cert.pem"\nkey = "{c}/rsa-key.pem"\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn("does not match", r.stderr)

    def test_supervisor_refuses_to_start_on_a_bad_config(self):
        path = write("[supervisor]\nworkers = -1\n")
        r = subprocess.run([binary("dingo-supervisor"), "--config", path],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"{path}:2: key 'supervisor.workers'", r.stderr)

    def test_config_from_environment(self):
        path = write("[supervisor]\nworkers = \"x\"\n")
        r = subprocess.run([binary("dingo-supervisor")], capture_output=True, text=True, timeout=10,
                           env={**os.environ, "DINGO_CONFIG": path})
        self.assertEqual(r.returncode, 2)
        self.assertIn(path, r.stderr)

    def test_missing_file(self):
        r = subprocess.run([binary("dingo-supervisor"), "--config", "/nonexistent/dingo.toml"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/dingo.toml", r.stderr)


if __name__ == "__main__":
    unittest.main()
