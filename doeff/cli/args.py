"""Arguments several commands share, declared once so that they read the same everywhere."""

from __future__ import annotations

import argparse


def add_store(parser: argparse.ArgumentParser) -> None:
    """The positional STORE argument (parsed later by `doeff.cli.store.open_store`)."""
    parser.add_argument("store", metavar="STORE", help="the store to open (forms below)")


def add_unsafe_pickle(parser: argparse.ArgumentParser) -> None:
    """--unsafe-pickle: the only way a command loads pickle-family records."""
    parser.add_argument(
        "--unsafe-pickle", action="store_true",
        help="allow loading pickle/cloudpickle records (this runs code stored in them)",
    )
