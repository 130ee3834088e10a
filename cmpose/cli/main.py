"""Entry point of the ``cmpose`` command.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from cmpose import __version__
from cmpose.cli import (
    ablate,
    bench,
    convert,
    data,
    demo,
    evaluate,
    export,
    infer,
    robustness,
    synth,
    test,
    train,
)
from cmpose.errors import CmposeError

log = logging.getLogger("cmpose")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmpose", description="CM-Pose video human pose estimation: data, evaluation, training."
    )
    parser.add_argument("--version", action="version", version=f"cmpose {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (
        data,
        synth,
        evaluate,
        train,
        test,
        infer,
        demo,
        ablate,
        bench,
        convert,
        robustness,
        export,
    ):
        module.register(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def handle_sigterm_like_sigint() -> None:
    """SIGTERM (``kill``, a scheduler's time limit, torchrun stopping its workers) unwinds like
    Ctrl-C: atomic writes delete their temporaries instead of leaving them behind, and
    ``cmpose infer`` says it was interrupted. Only when nobody installed another handler."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    ):
        signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    handle_sigterm_like_sigint()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CmposeError as err:
        # Input problems are the user's to fix: one clear line, no traceback.
        log.error("%s", err)
        return 2
    except KeyboardInterrupt as err:
        # Ctrl-C, or SIGTERM turned into the same (above): the atomic writes have removed their
        # temporaries on the way out, so one line says what happened instead of a traceback.
        # 128 + SIGINT, the shell's convention.
        hint = " (continue the run with --resume)" if getattr(args, "command", None) == "train" else ""
        log.error("interrupted by %s%s", str(err) or "SIGINT", hint)
        return 130


if __name__ == "__main__":
    sys.exit(main())
