"""The ``talkinghead`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a ``run(args) -> int`` function. Registration must stay cheap
(no torch import): heavy imports happen inside ``run``.

Errors of the user's making (:class:`talkinghead.errors.TalkingHeadError`) are printed as one line on
stderr with exit status 2; Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import TalkingHeadError

# Order shown in --help: the user's path first, then the trainer's, then tools.
COMMANDS = (
    "demo",
    "animate",
    "finetune",
    "landmarks",
    "preprocess",
    "train",
    "eval",
    "bench",
    "verify",
    "models",
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help and keeps the description's line breaks."""

    def _get_help_string(self, action):
        # None means "decided later" (e.g. train's options fall back to a resumed run's); the help
        # text names the real default, so "(default: None)" would only contradict it.
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="talkinghead",
        description="Animate a portrait or a painting from a driving video; learn a face from 1 to 32 photos.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"talkinghead {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub, _HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except TalkingHeadError as exc:
        print(f"talkinghead {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"talkinghead {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
