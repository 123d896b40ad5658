"""`explainer serve`: load the model (a clear message, not a traceback, if it cannot), then serve."""

from __future__ import annotations

import argparse
import os
import sys

from app.settings import env_flag
from model import DEFAULT_MODEL, Explainer, ModelLoadError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="explainer", description="See inside GPT-2 small, in the browser.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the web app and the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", default=os.environ.get("EXPLAINER_MODEL") or DEFAULT_MODEL,
                       help=f"a Hugging Face Hub id or a local directory saved with save_pretrained (default {DEFAULT_MODEL})")
    serve.add_argument("--random-weights", action="store_true",
                       default=env_flag("EXPLAINER_RANDOM_WEIGHTS"),
                       help="GPT-2 small's shapes with seeded random weights: works offline, predicts nothing")
    serve.add_argument("--device", default=os.environ.get("EXPLAINER_DEVICE") or "cpu")
    args = parser.parse_args(argv)

    try:
        print(f"Loading {'random weights in the shapes of ' if args.random_weights else ''}{args.model} ...", file=sys.stderr)
        explainer = Explainer.load(args.model, random_weights=args.random_weights, device=args.device)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    settings = Settings.from_env()
    settings = Settings(**{**settings.__dict__, "model": args.model, "random_weights": args.random_weights, "device": args.device})
    uvicorn.run(create_app(settings, explainer), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
