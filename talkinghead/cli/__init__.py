"""The ``talkinghead`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a ``run(args) -> int`` function. Registration must stay cheap
(no torch import): heavy imports happen inside ``run``.

Before the command runs, :func:`talkinghead.deps.check_command` checks that the packages it needs (and
its options need: ``--backend mediapipe``) are installed. Errors of the user's making
(:class:`talkinghead.errors.TalkingHeadError`) are printed as one line on stderr with exit status 2;
Ctrl-C exits with 130 and SIGTERM with 143, both after removing temporary output files. Warnings are
printed as one ``talkinghead CMD: warning: ...`` line each.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import warnings

from ..deps import check_command
from ..errors import TalkingHeadError

# Order shown in --help: the user's path first, then the trainer's, then tools.
COMMANDS = (
    "demo",
    "animate",
    "live",
    "web",
    "finetune",
    "landmarks",
    "preprocess",
    "train",
    "eval",
    "bench",
    "verify",
    "models",
)


class _UsageError(Exception):
    """A command line argparse refuses; :func:`main` prints it as one line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a bad option is one line (no usage block) and ``main`` returns 2 instead
    of exiting, like every other user error. Subcommand parsers inherit the class."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


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

    parser = _Parser(
        prog="talkinghead",
        description="Animate a portrait or a painting from a driving video; learn a face from 1 to 32 photos.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"talkinghead {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub, _HelpFormatter)
    return parser


class _Terminated(Exception):
    """SIGTERM (kill, a job scheduler, ``timeout``) raised as an exception, so the same clean-up as for
    Ctrl-C runs: temporary output files are removed and the last good file is kept."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def _show_warning(command: str):
    def show(message, category, filename, lineno, file=None, line=None):
        # one line for the user, not the library's file and line number; tqdm.write clears a running
        # progress bar first so the warning is not glued to its end
        from tqdm import tqdm

        tqdm.write(f"talkinghead {command}: warning: {message}", file=file or sys.stderr)
    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    in_main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning(args.command)
            check_command(args)  # a missing package is one line now, not a traceback after the work
            return int(args.func(args) or 0)
    except TalkingHeadError as exc:
        print(f"talkinghead {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"talkinghead {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"talkinghead {args.command}: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # the reader of stdout went away (`talkinghead verify ... | head`): as a shell tool does, stop
        # quietly; stdout goes to /dev/null so that Python's own flush at exit raises nothing either
        import os

        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, old_handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
