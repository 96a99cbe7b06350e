"""The ``benchmark`` command.

Each subcommand lives in its own module with ``register(subparsers)``;
its handler receives the parsed arguments, validates them once and calls into the library.

Bad input raises :class:`benchmark.errors.UserError` anywhere below: it is printed as one line and the exit
status is 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys

from benchmark import __version__
from benchmark.errors import UserError, did_you_mean
from benchmark.redaction import RedactingFilter, redact

# Subcommand modules, in the order `benchmark --help` lists them. Their top level and register() import only what
# the parser needs (tests/test_cli_startup.py checks): optuna, pandas, scipy, sklearn and torch load in the handlers.
_COMMANDS = ("datasets", "losses", "evaluate", "run", "tune", "sweep", "worker", "test", "embed", "status", "report",
             "dashboard", "check", "perf", "db")
# Commands that never touch Optuna: configuring its logging would import it (~1 s) for nothing.
_WITHOUT_OPTUNA = frozenset({"datasets", "losses", "evaluate", "embed"})


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage on an error; we keep to one line and exit 2 like every bad input.

    Prefix abbreviations are off: ``--trial 1`` must not silently mean ``--trials 1``. The parser records its long
    flags and subcommands as they are added, for the closest-match hints (argparse keeps its own lists private)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        self.long_flags: list[str] = []  # before argparse's __init__, which adds --help
        self.subcommands: dict[str, _Parser] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        return self.record(super().add_argument(*args, **kwargs))

    def record(self, action: argparse.Action) -> argparse.Action:
        self.long_flags += [flag for flag in action.option_strings if flag.startswith("--")]
        return action

    def add_mutually_exclusive_group(self, **kwargs) -> "_RecordedGroup":
        return _RecordedGroup(self, super().add_mutually_exclusive_group(**kwargs))

    def add_subparsers(self, **kwargs):
        action = super().add_subparsers(**kwargs)
        self.subcommands = action.choices  # name -> parser, filled by each add_parser
        return action

    def error(self, message):  # noqa: D401 - argparse's signature
        raise UserError(f"{self.prog}: {message}{_choice_suggestion(message)}")


class _RecordedGroup:
    """A mutually exclusive group whose flags its parser records too."""

    def __init__(self, parser: _Parser, group):
        self.parser, self.group = parser, group

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        return self.parser.record(self.group.add_argument(*args, **kwargs))


def _choice_suggestion(message: str) -> str:
    """argparse's "invalid choice: 'tunee' (choose from 'a', 'b')" plus the closest choice."""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    return did_you_mean(found.group(1), re.findall(r"'([^']*)'", found.group(2))) if found else ""


def _unrecognized(parser: _Parser, args, extras: list[str]) -> UserError:
    """The arguments no parser took, with the closest flag of the subcommand that was meant."""
    leaf = parser
    for dest in ("command", "action", "db_command", "losses_command"):
        name = getattr(args, dest, None)
        if name is not None and name in leaf.subcommands:
            leaf = leaf.subcommands[name]
    hint = next((did_you_mean(extra.split("=")[0], leaf.long_flags) for extra in extras if extra.startswith("-")
                 and did_you_mean(extra.split("=")[0], leaf.long_flags)), "")
    return UserError(f"{leaf.prog}: unrecognized arguments: {' '.join(extras)}{hint}")


def _accept_global_flags(parser: _Parser) -> None:
    """``benchmark tune ... --quiet`` works as well as ``benchmark --quiet tune ...``: every subcommand takes the
    global flags too (SUPPRESS: unset there, so they never undo the same flag given before the subcommand)."""
    for sub in parser.subcommands.values():
        sub.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                         help="only warnings and errors (also accepted before the command)")
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="debug logging (also accepted before the command)")
        _accept_global_flags(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="benchmark",
        description="Fair benchmarking of deep-metric-learning losses under the 'Metric Learning Reality Check' "
        "protocol: tune each loss over 4 class-disjoint folds, retrain the best configuration, report test metrics.",
    )
    parser.add_argument("--version", action="version", version=f"benchmark {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMANDS:
        importlib.import_module(f"benchmark.cli.{name}").register(subparsers)
    _accept_global_flags(parser)
    return parser


def _configure_logging(args) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    handler = logging.getLogger().handlers[0]
    handler.addFilter(_NoTracebackForLostConnections())
    handler.addFilter(RedactingFilter())  # last: it formats the traceback a filter above may have dropped
    logging.captureWarnings(True)  # warnings too pass the redaction
    # faiss announces which CPU build it loaded at INFO level; on stderr that buries a command's one-line error.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    if args.command in _WITHOUT_OPTUNA:
        return
    # Optuna's own messages go through our handler and obey --quiet; its experimental-API notices (heartbeats,
    # retry callback) are about Optuna's stability promises, not something a user can act on.
    import warnings

    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main(argv: list[str] | None = None) -> int:
    sys.excepthook = _redacted_excepthook
    try:
        parser = build_parser()
        args, extras = parser.parse_known_args(argv)
        if extras:
            raise _unrecognized(parser, args, extras)
        if args.command is None:
            parser.print_help()
            return 0
        _configure_logging(args)
        from benchmark.training.progress import bars

        # Bars for people at a terminal; plain log lines for logs, CI and --quiet.
        with bars(sys.stderr.isatty() and not args.quiet):
            return int(args.func(args) or 0)
    except UserError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        import signal

        print("interrupted", file=sys.stderr)
        # The interrupted work is recorded. At exit multiprocessing ends the DataLoader workers still alive, and
        # PyTorch's SIGCHLD handler would report each as "killed by signal" in a traceback: nothing to report now.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`benchmark datasets splits NAME | head`): nothing to report. stdout is
        # pointed at /dev/null so that the flush at exit does not fail again (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command stopped by a closed pipe
    except OSError as error:
        from benchmark.errors import out_of_space

        if not out_of_space(error):
            raise
        # Completed trials and reproductions are stored; the interrupted one is re-queued or retrained on rerun.
        where = f" writing {error.filename}" if error.filename else ""
        print(f"error: no space left on the disk{redact(where)}; free some and rerun the same command to resume",
              file=sys.stderr)
        return 1
    except Exception as error:
        from benchmark.results.db import database_error, driver_message, is_transient

        failed = database_error(error)
        if failed is None:
            raise
        message = redact(driver_message(failed))
        if not is_transient(failed):
            # Another application's tables, missing privileges, a read-only or full disk: a rerun would fail alike.
            print(f"error: the database refused a query: {message}; expected a benchmark database this user may "
                  "read and write (see --storage)", file=sys.stderr)
            return 2
        # A database that stayed unreachable (wait_for_server_restarts gave up): finished trials and reproductions
        # are stored, the interrupted one is re-queued on rerun.
        print(f"error: database error: {message}; rerun the same command to resume", file=sys.stderr)
        return 1


def _redacted_excepthook(kind, value, traceback) -> None:
    """A bug's traceback is printed as usual, but with any password in it hidden."""
    import traceback as tb

    sys.stderr.write(redact("".join(tb.format_exception(kind, value, traceback))))


class _NoTracebackForLostConnections(logging.Filter):
    """Optuna logs a failed trial with its traceback; one failed by a connection cut mid-query, an interrupt
    (Ctrl-C, SIGTERM) or a full disk is re-queued and resumed by the Tuner, which says so in one line: the
    traceback would only alarm. A bug's traceback stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith("optuna"):
            from benchmark.errors import out_of_space
            from benchmark.results.db import database_error

            error = record.exc_info[1]
            lost = database_error(error)
            if (isinstance(error, (KeyboardInterrupt, UserError)) or out_of_space(error)
                    or (lost is not None and lost.connection_invalidated)):
                record.exc_info, record.exc_text = None, None
        return True
