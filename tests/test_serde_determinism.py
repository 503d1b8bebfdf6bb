"""Equal values encode to equal bytes, also across processes with different hash seeds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st
from test_serde_roundtrip import USER_TYPES, hashables

from doeff.serde import JSONCodec, MsgpackCodec

SCRIPT = textwrap.dedent("""
    from datetime import date
    from doeff.serde import JSONCodec, MsgpackCodec
    words = {f"w{i}" for i in range(40)}
    value = {
        "words": words,
        "mixed": frozenset({1, "a", b"b", 2.5, None, (1, "x"), date(2024, 1, 1), frozenset({"z"})}),
        "nested": {frozenset({"k", "l", "m"}): {("t", 1), ("u", 2), ("v", 3)}},
    }
    print(",".join(list(words)[:5]))
    print(MsgpackCodec().encode(value).hex())
    print(JSONCodec().encode(value).hex())
""")


def _run(seed: str) -> list[str]:
    """The script's output lines under PYTHONHASHSEED=`seed`."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.splitlines()


def test_encoding_is_identical_under_different_hash_seeds() -> None:
    """Sets iterate differently under two seeds, yet both codecs write the same bytes."""
    first, second = _run("1"), _run("2")
    assert first[0] != second[0]  # the seeds really do change set order
    assert first[1:] == second[1:]


@given(items=st.lists(hashables, max_size=8, unique_by=repr))
def test_set_bytes_do_not_depend_on_insertion_order(items: list[object]) -> None:
    """A set built in reverse order encodes to the same bytes."""
    forward, backward = set(items), set(reversed(items))
    # Equal elements (1 and 1.0, say) merge: the two sets could then differ in which one stayed.
    assume(len(forward) == len(items))
    for codec in (MsgpackCodec(types=USER_TYPES), JSONCodec(types=USER_TYPES)):
        assert codec.encode(forward) == codec.encode(backward)
        assert codec.encode(frozenset(items)) == codec.encode(frozenset(reversed(items)))
