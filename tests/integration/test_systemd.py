"""systemd interfaces of dingo-supervisor: sd_notify and socket activation (LISTEN_FDS)."""
import os
import socket
import subprocess
import tempfile
import time
import unittest

from harness import Supervisor, binary, terminate, wait_for


class NotifyTest(unittest.TestCase):
    def test_ready_watchdog_and_stopping(self):
        sup = Supervisor(workers=2, tls=False)
        d = tempfile.mkdtemp(prefix="dingo-notify-")
        path = os.path.join(d, "notify.sock")
        recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        recv.bind(path)
        recv.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        log = open(sup.log_path, "wb")
        proc = subprocess.Popen([binary("dingo-supervisor"), "--config", sup.config], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            messages = []

            def got(what):
                while not any(what in m for m in messages):
                    messages.append(recv.recv(4096).decode())
                return True

            got("READY=1")
            self.assertTrue(any("MAINPID=" + str(proc.pid) in m for m in messages), messages)
            # WATCHDOG=1 at half of WATCHDOG_USEC: a few in a second.
            t0 = time.monotonic()
            count = 0
            while time.monotonic() - t0 < 1.0:
                if "WATCHDOG=1" in recv.recv(4096).decode():
                    count += 1
            self.assertGreaterEqual(count, 3)
            proc.terminate()
            got("STOPPING=1")
            proc.wait(timeout=15)
        finally:
            terminate(proc)
            log.close()
            recv.close()
            sup.cleanup()


class SocketActivationTest(unittest.TestCase):
    def test_listen_fds_are_adopted_and_early_connections_wait_in_the_backlog(self):
        sup = Supervisor(workers=2, tls=False)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", sup.http_port))
        listener.listen(128)
        # A client connects before the supervisor even runs: the kernel queues it.
        early = socket.create_connection(("127.0.0.1", sup.http_port), timeout=10)
        early.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        fd = listener.fileno()

        def put_on_fd3():
            os.dup2(fd, 3)
            os.set_inheritable(3, True)

        log = open(sup.log_path, "wb")
        cmd = f'LISTEN_PID=$$ LISTEN_FDS=1 exec "{binary("dingo-supervisor")}" --config "{sup.config}"'
        # Popen closes every fd not in pass_fds after preexec_fn runs: keep 3 too.
        proc = subprocess.Popen(["/bin/sh", "-c", cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=put_on_fd3, pass_fds=tuple({fd, 3}))
        sup.proc, sup.log_file = proc, log
        try:
            listener.close()  # the supervisor holds it now
            data = b""
            try:
                while True:
                    chunk = early.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError as e:
                self.fail(f"early connection: {e!r}\n{sup.log()}")
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
            sup.wait_ready()
            self.assertIn("socket passed with LISTEN_FDS", sup.log())
            wait_for(lambda: sup.status()["listeners"][0]["accepted"] >= 1, 5, what="accepted count")
            # A passed socket without SO_REUSEPORT cannot share its address with a group of
            # slot sockets: that listener stays with the hand-off.
            self.assertEqual(sup.status()["accept"]["mode"], "handoff")
        finally:
            early.close()
            sup.cleanup()


if __name__ == "__main__":
    unittest.main()
