"""A real server in a subprocess on 127.0.0.1, for tests that need real sockets (streaming,
disconnects, the browser) or the real command line (start-up, logging, an installed wheel)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(command: list[str], env: dict | None = None, cwd: str | None = None, timeout_s: float = 120,
            port: int | None = None) -> Iterator[Server]:
    """Start `command` with `--host 127.0.0.1 --port P` appended, wait for /healthz, yield the
    Server, then stop it. Its output goes to a file: a pipe nobody reads would fill with access
    lines and block the server. A None in `env` removes that variable."""
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="live-server-") as folder:
        log_path = Path(folder) / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)],
                                       env=environment, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        server = Server(f"http://127.0.0.1:{port}", process, log_path)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}: {server.log[-2000:]}")
                try:
                    if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the server did not become healthy within {timeout_s} s: {server.log[-2000:]}")
                time.sleep(0.1)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_command(model_dir: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve", "--model", str(model_dir), *args]


@contextlib.contextmanager
def live_server(model_dir: str, *args: str, env: dict | None = None, timeout_s: float = 120) -> Iterator[str]:
    """`python -m app.cli serve --model model_dir`; yields its base URL."""
    with serving(serve_command(model_dir, *args), env, timeout_s=timeout_s) as server:
        yield server.url


class SharedServers:
    """Live servers shared by every test of the run (conftest's `live_servers` fixture): one per
    command and settings, started when first asked for and kept, so that the modules on the same
    checkpoint and settings share one server. The settings are the EXPLAINER_* variables given;
    none is inherited from this process, so that a server's settings are its key. `trim()`, which
    conftest calls between modules (never inside one), stops the least recently used past `keep`.
    A test that stops or restarts its server, or changes what it holds for good, starts its own."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._running: dict[tuple, tuple[contextlib.ExitStack, Server]] = {}  # oldest use first

    def serve(self, command: list[str], env: dict | None = None) -> Server:
        settings = {k: v for k, v in (env or {}).items() if v is not None}
        key = (tuple(command), tuple(sorted(settings.items())))
        if key not in self._running:
            stack = contextlib.ExitStack()
            unset = {k: None for k in os.environ if k.startswith("EXPLAINER_") and k not in settings}
            server = stack.enter_context(serving(command, {**unset, **(env or {})}))
            self._running[key] = (stack, server)
        self._running[key] = self._running.pop(key)  # the newest use last
        return self._running[key][1]

    def url(self, model_dir: str, *args: str, env: dict | None = None) -> str:
        """The base URL of `explainer serve --model model_dir *args` with these settings."""
        return self.serve(serve_command(model_dir, *args), env).url

    def trim(self) -> None:
        while len(self._running) > self.keep:
            self._running.pop(next(iter(self._running)))[0].close()

    def close(self) -> None:
        while self._running:
            self._running.popitem()[1][0].close()
