"""The app on a real uvicorn server in a thread of this process, on 127.0.0.1: real sockets
(streaming, disconnects, other loopback addresses standing for other computers) without a new
process importing torch. It is `explainer serve`'s server (app.cli): the same connection options
and the same handling of SIGTERM, which `stop(sigterm=True)` calls as uvicorn's signal handler
would."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from app import cli
from app.serving import connections, logs
from app.serving.settings import Settings

from .live_server import free_port
from .waiting import wait_until


@dataclass
class ThreadedServer:
    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def protocol(self):
        """The HTTP protocol class, whose `table` counts the open connections."""
        return self.server.config.http_protocol_class

    def sigterm(self) -> None:
        """What SIGTERM does to `explainer serve` (the handler uvicorn installs calls this)."""
        self.server.handle_exit(signal.SIGTERM, None)


@contextlib.contextmanager
def threaded_server(app, settings: Settings | None = None, http: str = "auto",
                    log_level: str | None = None) -> Iterator[ThreadedServer]:
    """Serve `app` (built by create_app) until the block ends; yields the running server.
    `log_level`: uvicorn configures logging as `explainer serve` has it do (logs.config), which
    changes this process's loggers (the caller restores them); None leaves logging alone."""
    settings = settings or app.state.settings
    port = free_port()
    log_config = None if log_level is None else logs.config(log_level)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=log_config, access_log=False,
                            timeout_graceful_shutdown=cli.GRACEFUL_SHUTDOWN_S,
                            **connections.uvicorn_options(settings, http))
    server = cli._stopping_server()(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), "the server did not start", timeout_s=60)
    assert thread.is_alive(), "the server stopped at start-up"
    try:
        yield ThreadedServer(f"http://127.0.0.1:{port}", port, server, thread)
    finally:
        server.should_exit = True
        thread.join(30)
