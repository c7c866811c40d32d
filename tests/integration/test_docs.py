"""Man pages render without warnings and document every option each binary's --help prints."""
import os
import re
import subprocess
import unittest

from harness import SOURCE, binary

MAN = os.path.join(SOURCE, "man")
PAGES = {"dingo-supervisor": "dingo-supervisor.8", "dingo-gateway": "dingo-gateway.8",
         "dingo-watchdog": "dingo-watchdog.8",
         "dingoctl": "dingoctl.1"}


def help_options(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", text))


def man_text(page):
    # groff escapes dashes as \-; compare on plain text.
    with open(os.path.join(MAN, page)) as f:
        return f.read().replace("\\-", "-")


class ManPagesTest(unittest.TestCase):
    def test_pages_render_cleanly(self):
        for page in sorted(os.listdir(MAN)):
            r = subprocess.run(["groff", "-man", "-ww", "-z", os.path.join(MAN, page)],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, page)
            self.assertEqual(r.stderr, "", f"{page}: {r.stderr}")

    def test_every_help_option_is_in_the_man_page(self):
        for b, page in PAGES.items():
            out = subprocess.run([binary(b), "--help"], capture_output=True, text=True, timeout=10).stdout
            if b == "dingoctl":
                for sub in ("status", "metrics", "stop", "top"):
                    out += subprocess.run([binary(b), sub, "--help"], capture_output=True, text=True,
                                          timeout=10).stdout
            text = man_text(page)
            missing = sorted(o for o in help_options(out) if o not in text)
            self.assertEqual(missing, [], f"{page} lacks options printed by {b} --help")

    def test_every_config_key_is_in_dingo_toml_5(self):
        with open(os.path.join(SOURCE, "core", "Config.cpp")) as f:
            src = f.read()
        keys = set(re.findall(r'r\.(?:str|boolean|integer|duration|size|strings)\("([a-z_]+)"', src))
        keys |= {"dispatch", "min_version", "max_version"}
        text = man_text("dingo.toml.5")
        missing = sorted(k for k in keys if not re.search(rf"\.B {k}\b", text))
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
