"""Arguments several commands share, declared once so that they read the same everywhere."""

from __future__ import annotations

import argparse
import os
import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> float:
    """`90`, `45s`, `30m`, `12h`, `7d`, `2w` as seconds (argparse type)."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write a number with s, m, h, d or w (e.g. 7d, 12h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def add_store(parser: argparse.ArgumentParser) -> None:
    """The positional STORE argument (parsed later by `doeff.cli.store.open_store`)."""
    parser.add_argument("store", metavar="STORE", help="the store to open (forms below)")


def add_unsafe_pickle(parser: argparse.ArgumentParser) -> None:
    """--unsafe-pickle: the only way a command loads pickle-family records."""
    parser.add_argument(
        "--unsafe-pickle", action="store_true",
        help="allow loading pickle/cloudpickle records (this runs code stored in them)",
    )


KEY_FILE_ENV = "DOEFF_SIGNING_KEY_FILE"


def add_signing_key(parser: argparse.ArgumentParser, signs: bool = False) -> None:
    """--signing-key-file (default: $DOEFF_SIGNING_KEY_FILE): verify records against its keys
    (and, for a command that writes, `signs`, sign with its first key)."""
    also = " and sign every record written with its first key" if signs else ""
    parser.add_argument(
        "--signing-key-file", metavar="FILE", default=os.environ.get(KEY_FILE_ENV) or None,
        help=f"verify signatures with the keys in FILE (one hex key per line; default "
        f"${KEY_FILE_ENV}){also}; a record that fails is never decoded",
    )
