#!/usr/bin/env python3
"""Runs one headless-Chromium test file (node --test) against a real dingo-supervisor.

    tests/browser/run.py FILE.test.mjs [--workers N] [--extra TOML] [--auth]

The supervisor comes from tests/integration/harness.py (free loopback ports, a temporary
folder, every process stopped at the end, whatever happens). The test file learns where
everything is from the environment: DINGO_HTTP_PORT, DINGO_ADMIN_PORT, DINGO_CONTROL (the
control socket, for dingoctl), DINGO_BIN, DINGO_DIR (the supervisor's folder) and
DINGO_ARTIFACTS (a folder in the build tree for screenshots). With --auth the supervisor
requires JWTs ([auth] required = true) checked with an ES256 key made for the run: the test
signs its tokens with DINGO_DIR/jwt-es256.key."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import BIN, Supervisor  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--extra", default="", help="TOML appended to the config")
    ap.add_argument("--auth", action="store_true", help="require ES256 JWTs signed by DINGO_DIR/jwt-es256.key")
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        sys.exit("tests/browser: playwright-core is not installed (scripts/install-deps.sh runs npm ci)")
    artifacts = os.path.join(os.environ.get("DINGO_BUILD", os.path.join(BIN, "..")), "browser-artifacts")
    os.makedirs(artifacts, exist_ok=True)
    extra = args.extra.replace("\\n", "\n")
    if args.auth:
        extra += ('\n[auth]\nrequired = true\njwt_public_keys = ["jwt-es256.pub"]\nleeway = "0s"\n'
                  'expiring_notice = "2s"\n')
    sup = Supervisor(workers=args.workers, tls=False, extra=extra)
    try:
        if args.auth:
            key, pub = os.path.join(sup.dir, "jwt-es256.key"), os.path.join(sup.dir, "jwt-es256.pub")
            subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-out", key], check=True)
            subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True)
        sup.start()
        env = dict(os.environ, DINGO_HTTP_PORT=str(sup.http_port), DINGO_ADMIN_PORT=str(sup.admin_port),
                   DINGO_CONTROL=sup.control, DINGO_BIN=BIN, DINGO_DIR=sup.dir, DINGO_ARTIFACTS=artifacts)
        r = subprocess.run(["node", "--test", "--test-reporter=spec", os.path.join(HERE, args.file)],
                           env=env, cwd=HERE, timeout=args.timeout)
        if r.returncode != 0:
            print("---- supervisor log ----\n" + sup.log()[-8000:])
        return r.returncode
    finally:
        sup.cleanup()


if __name__ == "__main__":
    sys.exit(main())
