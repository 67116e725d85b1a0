"""`./dev demo` as a user starts it (the README's first command), in a subprocess on free
loopback ports with its own data folder; read its welcome, stop it with a signal."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The welcome's one-time sign-in links: "  sign in admin  URL   (...)".
LINK_LINE = re.compile(r"^\s*sign in (admin|staff)\s+(\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DemoProcess:
    data_dir: Path
    subscribers: int = 20
    web_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    inbound_port: int = field(default_factory=free_port)
    lines: list[str] = field(default_factory=list)
    # The one-time sign-in links the welcome printed: "admin" and "staff" (the marketer).
    links: dict[str, str] = field(default_factory=dict)
    # Set on top of a fresh machine's environment (which has no database URL and no keys).
    environment: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[str] | None = None
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, *extra: str, timeout: float = 120.0) -> None:
        """Run `./dev demo` and wait until it prints its URLs and the sign-in links."""
        # A fresh machine: no database URL, no keys in the environment.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("OPTOUT_") and k not in ("DATABASE_URL", "SMTP_URL")
        }
        env.update(self.environment)
        env["OPTOUT_DATA_DIR"] = str(self.data_dir)
        env["OPTOUT_JOURNAL_DIR"] = str(self.data_dir.parent / f"{self.data_dir.name}-journal")
        self._process = subprocess.Popen(
            [
                str(ROOT / "dev"),
                "demo",
                "--port",
                str(self.web_port),
                "--smtp-port",
                str(self.smtp_port),
                "--inbound-port",
                str(self.inbound_port),
                "--subscribers",
                str(self.subscribers),
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a signal reaches the demo alone, as Ctrl-C would
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            line = self._next_line(deadline)
            found = LINK_LINE.match(line)
            if found:
                self.links[found.group(1)] = found.group(2)
            elif len(self.links) == 2 and not line.strip():
                return  # the blank line that ends the welcome

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _next_line(self, deadline: float) -> str:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the demo did not print its welcome in time:\n" + self.output)
        try:
            line = self._queue.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("the demo printed nothing more:\n" + self.output) from None
        if line is None:
            raise RuntimeError("the demo ended early:\n" + self.output)
        self.lines.append(line)
        return line

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(
        self, sig: signal.Signals = signal.SIGINT, timeout: float = 60.0, *, group: bool = False
    ) -> int:
        """Signal the demo and wait for it to finish; returns its exit code. ``group``: signal
        its whole process group, embedded Postgres included, as Ctrl-C in a terminal does."""
        assert self._process is not None
        if self._process.poll() is None:
            if group:
                os.killpg(self._process.pid, sig)
            else:
                self._process.send_signal(sig)
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
            raise
        # Collect what it printed while stopping, up to the end of its output.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
        if self._process.stdout is not None:
            self._process.stdout.close()
        return code

    def kill(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def caught(self) -> list[Path]:
        return sorted((self.data_dir / "demo" / "outbox").glob("*.eml"))

    def wait_for_messages(self, count: int, timeout: float = 60.0) -> list[Path]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.caught()
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} messages caught:\n{self.output}")
            time.sleep(0.2)
