"""The argument parser of `doeff` and the one place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import os
import sys

from doeff.cli import cache, check, migrate, runs, steps
from doeff.cli.errors import EXIT_FAILED, EXIT_USAGE, CLIError
from doeff.cli.output import warn
from doeff.cli.store import FORMS
from doeff.errors import DoeffError, IncompatibleStoreError

_EPILOG = f"""\
STORE is {FORMS}.
exit status: 0 done, 1 the command could not do all it was asked (details on stderr),
2 bad usage or a store that is missing, unreachable or not a doeff store."""


def build_parser() -> argparse.ArgumentParser:
    """`doeff` with its `cache`, `runs`, `demo` and `dashboard` commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="doeff", description="Inspect, repair and migrate doeff durable stores.",
        epilog=_EPILOG, formatter_class=fmt,
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    cache_parser = top.add_parser(
        "cache", help="look at, repair and migrate the records of a durable store",
        description="Look at, repair and migrate the records of a durable store.",
        epilog=_EPILOG, formatter_class=fmt,
    )
    runs_parser = top.add_parser(
        "runs", help="see, follow and steer the runs recorded in a store (run_id=)",
        description="See, follow and steer the runs recorded in a store (runs given run_id=).",
        epilog=_EPILOG, formatter_class=fmt,
    )
    runs_sub = runs_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                          required=True)
    runs.add_commands(runs_sub)
    for name, p in runs_sub.choices.items():
        p.prog = f"doeff runs {name}"
        p.epilog, p.formatter_class = _EPILOG, fmt
    # Listed for --help only: main() hands `demo` to doeff.cli.demo before parsing.
    top.add_parser("demo", help="run a durable workflow, kill it, resume it", add_help=False)
    # Likewise `dashboard`, handed to doeff.dashboard.command (it needs the dashboard extra).
    top.add_parser("dashboard", help="serve a live web dashboard of a store's runs and cache",
                   add_help=False)
    sub = cache_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    cache.add_commands(sub)
    steps.add_commands(sub)
    check.add_command(sub)
    migrate.add_command(sub)
    for name, p in sub.choices.items():
        p.prog = f"doeff cache {name}"
        p.epilog, p.formatter_class = _EPILOG, fmt
    return parser


def main(argv: list[str]) -> int:
    """Run `doeff ARGV` (other than `demo`) and return its exit code."""
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    ns = parser.parse_args(argv)
    # Python's int-digit limit stays in force: lifting it would make printing or parsing a
    # crafted huge int take quadratic time. `get` shows such ints by their digit count.
    try:
        code: int = ns.func(ns)
        sys.stdout.flush()
    except CLIError as exc:
        warn(str(exc))
        return exc.code
    except IncompatibleStoreError as exc:
        warn(str(exc))
        return EXIT_USAGE
    except DoeffError as exc:  # a storage failure mid-command: the backend says what happened
        warn(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except BrokenPipeError:
        # `doeff cache ls STORE | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush cannot fail again, as Python's docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        done = getattr(ns, "committed", None)
        warn("interrupted" + (" after the migration was committed" if done else
                              "; nothing was written" if done is not None else ""))
        return 130
    except Exception as exc:  # a bug or an unexpected failure: still one line, not a traceback
        warn(f"unexpected {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    return code
