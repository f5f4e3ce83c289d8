"""The ``probekit`` command line: argparse subcommands, one module each.

Conventions every subcommand follows (docs/design.md §5):
- errors are one line naming the parameter, what is allowed and what was given;
- exit 2 for usage errors, 1 for runtime errors, traceback only with ``--debug``;
- heavy imports happen inside ``run()``, so ``probekit --help`` stays fast;
- outputs are written atomically, so a failure leaves no partial file.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from typing import Iterator, Sequence

from probekit._version import __version__

# name -> module; each module defines ``add_parser(subparsers)`` and ``run(args)``.
SUBCOMMANDS = {
    "analyze": "probekit.cli.analyze_cmd",
    "select": "probekit.cli.select_cmd",
    "inspect": "probekit.cli.inspect_cmd",
    "export": "probekit.cli.export_cmd",
    "selectors": "probekit.cli.selectors_cmd",
    "transitions": "probekit.cli.transitions_cmd",
    "bench": "probekit.cli.bench_cmd",
    "record": "probekit.cli.record_cmd",
}

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """argparse prints a usage block before its error; probekit prints one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="probekit",
        description="Design, score and monitor probe sets for the dynamical 2RDM.",
        epilog="Run 'probekit COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"probekit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    _accept_global_flags(sub)
    return parser


def _accept_global_flags(sub: argparse._SubParsersAction) -> None:
    """--debug and -v work after the subcommand too (`probekit select ... --debug`).

    SUPPRESS as the default keeps a subcommand from resetting a flag given before it.
    """
    for command in set(sub.choices.values()):
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show full tracebacks on errors")
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="log progress to stderr")
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _accept_global_flags(action)


def main(argv: Sequence[str] | None = None) -> int:
    import shlex

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # name the command whose flags they are not, as argparse does for its own errors
        command = _subparser(parser, args)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command_line = "probekit " + shlex.join(argv)  # what was run, for reports that record it
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    with _one_line_warnings(f"probekit {args.command}"), _stop_on_sigterm():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader's INFO lines are not progress
    from probekit.errors import ProbekitError, ProbekitUsageError

    prog = f"probekit {args.command}"
    try:
        return int(args.run(args) or EXIT_OK)
    except BrokenPipeError:
        # The reader went away (`probekit analyze | head`): outputs are already
        # written; stop quietly, and keep Python from complaining at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_RUNTIME
    # --debug adds the traceback before the same one-line error; the exit code does not change.
    except ProbekitUsageError as exc:
        _traceback_if(args.debug)
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (ProbekitError, OSError) as exc:
        _traceback_if(args.debug)
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prog}: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        _traceback_if(args.debug)
        hint = "" if args.debug else " (rerun with --debug for a traceback)"
        print(f"{prog}: internal error: {type(exc).__name__}: {_one_line(exc)}{hint}", file=sys.stderr)
        return EXIT_RUNTIME


class Terminated(BaseException):
    """SIGTERM (timeout, a batch scheduler, docker stop), raised so that cleanup runs as for Ctrl-C."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    import signal
    import threading

    def handler(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _one_line_warnings(prog: str) -> Iterator[None]:
    """Warnings as one line each, `probekit CMD: warning: ...`, not Python's file:line + source."""
    import warnings

    def formatwarning(message, category, filename, lineno, line=None):
        return f"{prog}: warning: {' '.join(str(message).split())}\n"

    previous = warnings.formatwarning
    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command that was run, for errors that belong to it."""
    current = parser
    for dest in ("command", "action"):
        name = getattr(args, dest, None)
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not name or not actions or name not in actions[0].choices:
            break
        current = actions[0].choices[name]
    return current


def _traceback_if(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())
