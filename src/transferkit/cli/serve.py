"""`transferkit serve`: parse, call `transferkit.serve.serve`. The web stack is imported only here, in
`run_serve`, so the other commands start without it."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from transferkit.cli.flags import flag_arguments
from transferkit.serve.config import ServeConfig


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `serve` subcommand to the `transferkit` parser."""
    parser = commands.add_parser(
        "serve",
        help="serve a fine-tuned model over HTTP: a prediction API and a web page",
        description="POST /predict (multipart files or JSON base64), GET /info, /health, /metrics "
        "(Prometheus), and a page at / to drop images on. Concurrent requests are batched. Binds to "
        "127.0.0.1 unless --host says otherwise. Needs pip install 'transferkit[serve]'.",
    )
    parser.add_argument("model", metavar="RUN_OR_BUNDLE", help="run directory or bundle folder")
    hints = typing.get_type_hints(ServeConfig)
    for spec in dataclasses.fields(ServeConfig):
        if spec.metadata.get("flag"):
            arguments = flag_arguments(hints[spec.name], spec)  # a list (cors_origin) takes several values
            parser.add_argument(f"--{spec.name.replace('_', '-')}", dest=spec.name, **arguments)
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from transferkit.serve.server import serve

    given = {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(ServeConfig)}
    serve(ServeConfig(**{name: value for name, value in given.items() if value is not None}))
    return 0
