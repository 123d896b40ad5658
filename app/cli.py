"""The `explainer` command: `serve` the page and the API, or `download` GPT-2's weights into the
Hugging Face cache. Heavy imports wait until a command needs them: `--help`, and a download that
cannot reach the Hub, answer at once."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from app.serving import connections, logs
from app.serving.settings import Settings, SettingsError
from model.hub import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="explainer", description="See inside GPT-2 small, in the browser.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the web app and the API",
                                description="Serve the page and the API. Without --model: GPT-2 small from the Hugging "
                                            "Face cache or the Hub, else (offline) an untrained model, said loudly.")
    serve.add_argument("--host", help="the address to listen on (default: EXPLAINER_HOST, else 127.0.0.1: this "
                                      "computer only; --classroom: every interface)")
    serve.add_argument("--classroom", action="store_true",
                       help="for a class: listen on every interface, print the address students open (with a QR "
                            "code) and the teacher URL; teacher actions then need the teacher token")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", help="a Hugging Face Hub id or a directory saved with save_pretrained "
                                       f"(default: EXPLAINER_MODEL, else {DEFAULT_MODEL})")
    serve.add_argument("--revision", help="a Hub branch, tag or commit (default: EXPLAINER_REVISION, else main)")
    serve.add_argument("--random-weights", action="store_true", default=None,
                       help="GPT-2 small's shapes with seeded random weights: works offline, predicts nothing")
    serve.add_argument("--device", help="torch device (default: EXPLAINER_DEVICE, else cpu)")
    serve.add_argument("--log-level", choices=logs.LEVELS, help="default: EXPLAINER_LOG_LEVEL, else info")
    cluster = serve.add_argument_group("scale-out on Ray Serve (needs the extra: pip install \"explainer[cluster]\")")
    cluster.add_argument("--replicas", type=_positive, default=1,
                         help="copies of the app, each loading the model in its own process, behind Ray's HTTP proxy "
                              "(more than 1 starts Ray; default 1: one plain uvicorn process)")
    cluster.add_argument("--ray", action="store_true", help="serve through Ray Serve even with one replica")
    cluster.add_argument("--ray-address", help="join this running Ray cluster (auto, or HEAD:6379 from one of its nodes) "
                                               "instead of starting Ray on this machine; implies --ray")
    cluster.add_argument("--cpus-per-replica", type=float,
                         help="CPUs each replica reserves, and its torch threads (default: this machine's or the "
                              "cluster's cores divided by --replicas)")
    serve.set_defaults(run=_serve)

    download = commands.add_parser("download", help="fetch GPT-2's weights into the Hugging Face cache",
                                   description="Fetch a model's weights into the standard Hugging Face cache "
                                               "(HF_HOME), check that they load, and say how to serve them.")
    download.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"a Hub id (default {DEFAULT_MODEL})")
    download.add_argument("--revision", help="a branch, tag or commit (default main)")
    download.set_defaults(run=_download)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:  # Ctrl-C while the model loads: no traceback for that
        return 130


def _serve(args: argparse.Namespace) -> int:
    given = {"model": args.model, "revision": args.revision, "random_weights": args.random_weights,
             "device": args.device, "log_level": args.log_level}
    try:
        settings = dataclasses.replace(Settings.from_env(), **{k: v for k, v in given.items() if v is not None})
        host = args.host or ("0.0.0.0" if args.classroom else settings.host)
        # The name it was started on is one it answers to (0.0.0.0 and IPs pass the check anyway).
        settings = dataclasses.replace(settings, host=host, allowed_hosts=(*settings.allowed_hosts, host.lower()))
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    connections.raise_open_file_limit()  # for the connection cap (and Ray's processes, which inherit it)
    try:  # before the model loads: a port in use is known in a moment, not after a minute
        sock = _bind(settings.host, args.port)
    except OSError as error:
        print(f"error: cannot listen on {settings.host} port {args.port}: {error.strerror or error}. Another server "
              f"may be running there: stop it, or choose another port with --port.", file=sys.stderr)
        return 2
    if args.replicas > 1 or args.ray or args.ray_address:
        sock.close()  # Ray's proxy binds it itself
        from app.rooms.classroom import Teacher, announce, is_loopback

        if settings.teacher_token is None and not is_loopback(settings.host):  # one token for every replica
            settings = dataclasses.replace(settings, teacher_token=Teacher(settings).token)
        announce(settings, args.port, Teacher(settings))
        return _serve_on_ray(args, settings)

    import uvicorn

    from app.rooms.classroom import announce
    from app.main import create_app  # before the model: a broken install fails at once, not after the load
    from app.serving.startup import load_explainer

    explainer = load_explainer(settings)  # one line and exit 2 if it cannot
    app = create_app(settings, explainer)
    config = uvicorn.Config(app, host=settings.host, port=args.port,
                            log_config=logs.config(settings.log_level), access_log=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, **connections.uvicorn_options(settings))
    announce(settings, args.port, app.state.teacher)
    _stopping_server()(config).run(sockets=[sock])
    return 0


def _bind(host: str, port: int):
    """The listening address, bound (not yet listening: uvicorn listens once the app is ready)."""
    import socket

    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


GRACEFUL_SHUTDOWN_S = 5


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _serve_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    """N replicas under Ray Serve (app/cluster.py): each loads the model itself."""
    try:
        from app.cluster import serve_on_ray
        import ray.serve  # noqa: F401
    except ImportError:
        print('error: --replicas and --ray need Ray Serve: pip install "explainer[cluster]"', file=sys.stderr)
        return 2
    return serve_on_ray(settings, settings.host, args.port, args.replicas, args.ray_address, args.cpus_per_replica)


def _stopping_server():
    import uvicorn

    class StoppingServer(uvicorn.Server):
        """On SIGTERM or Ctrl-C, the forward queue is closed at once: queued work answers 503
        ("stopping") and streams end with an error event, instead of the shutdown waiting for
        all of it. uvicorn then waits GRACEFUL_SHUTDOWN_S for what is running, and cancels it."""

        async def serve(self, sockets=None):
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig, frame):
            limiter = getattr(self.config.app.state, "limiter", None)
            followers = getattr(self.config.app.state, "room_followers", None)
            if getattr(self, "loop", None) is not None:  # from a signal handler: only thread-safe calls
                if limiter is not None:
                    self.loop.call_soon_threadsafe(limiter.close)
                if followers is not None:  # idle follow streams end now, not at the graceful timeout
                    self.loop.call_soon_threadsafe(followers.stop)
            super().handle_exit(sig, frame)

    return StoppingServer


def _download(args: argparse.Namespace) -> int:
    from app.download import download

    return download(args.model, args.revision)


if __name__ == "__main__":
    sys.exit(main())
