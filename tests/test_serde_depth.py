"""No depth crashes a reader: every depth a codec writes, it reads, and a crafted record of any
depth is a DecodeError. Each check runs in a child process, in a thread with a small stack, so
a stack overflow shows up as the crash it is (a signal), not as a hung or vanished test run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from doeff.errors import DecodeError
from doeff.serde import MsgpackCodec

ROOT = Path(__file__).resolve().parent.parent

# Shared by the child scripts: build values and records of a given depth, and run a check in a
# thread whose stack is 512 KiB (a reader that recursed per level would overflow it long before
# 200 levels: the old msgpack reader used about 40 KiB of C stack per nested tuple).
PRELUDE = textwrap.dedent("""
    import dataclasses, sys, threading
    import msgpack
    from doeff.errors import DecodeError, EncodeError
    from doeff.serde import JSONCodec, MsgpackCodec

    @dataclasses.dataclass(frozen=True)
    class Node:
        child: object

    MAKERS = {
        "list": lambda v: [v],
        "tuple": lambda v: (v,),
        "frozenset": lambda v: frozenset({v}),
        "frozenset-of-tuples": lambda v: frozenset({(v,), 1}),
        "dict": lambda v: {"k": v},
        "registered": lambda v: Node(v),
        "mixed": lambda v: [v] if isinstance(v, tuple) else (v,),
    }

    def nested(kind, depth):
        value = None
        for _ in range(depth):
            value = MAKERS[kind](value)
        return value

    def in_small_thread(fn):
        threading.stack_size(512 * 1024)
        out = []
        def run():
            try:
                out.append(("ok", fn()))
            except BaseException as exc:
                out.append(("error", exc))
        t = threading.Thread(target=run)
        t.start()
        t.join()
        return out[0]
""")


def _run(script: str) -> list[str]:
    """Run PRELUDE + `script` in a child interpreter; its stdout lines (fails on a crash)."""
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"the reader crashed with {name}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout.splitlines()


@pytest.mark.parametrize("codec", ["MsgpackCodec", "JSONCodec"])
def test_every_depth_a_codec_writes_it_reads(codec: str) -> None:
    """For each kind of container (and registered types, and mixes), find the deepest value
    the codec encodes and decode it, in a small-stack thread: it comes back equal."""
    lines = _run(f"""
        codec = {codec}(types=[Node])
        def accepts(kind, depth):
            try:
                codec.encode(nested(kind, depth))
                return True
            except EncodeError:
                return False
        for kind in MAKERS:
            low, high = 1, 4000
            assert accepts(kind, low) and not accepts(kind, high), kind
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if accepts(kind, mid) else (low, mid)
            data = codec.encode(nested(kind, low))
            status, back = in_small_thread(lambda: codec.decode(data))
            # Python's == recurses past its limit at these depths; equal exact encodings of
            # values of the same type are the same value.
            print(kind, low, status, status == "ok" and codec.encode(back) == data)
    """)
    assert len(lines) == 7
    for line in lines:
        _, depth, status, equal = line.split()
        assert status == "ok" and equal == "True", line
        assert int(depth) >= 60, line  # deep enough for real values


def _v1_nested(code: int, depth: int) -> bytes:
    """A record as doeff wrote before container markers: `depth` extension values each holding
    a one-item array of the next (code 11 holds [name, state])."""
    import msgpack  # type: ignore[import-untyped]

    inner = msgpack.packb(None)
    for _ in range(depth):
        if code == 11:
            payload = b"\x92" + msgpack.packb("x.Node") + b"\x81\xa5child" + inner
        else:
            payload = b"\x91" + inner
        inner = msgpack.packb(msgpack.ExtType(code, payload))
    return bytes(inner)


@pytest.mark.parametrize("depth", [150, 400, 3000])
@pytest.mark.parametrize(("code", "kind"), [(1, "tuple"), (2, "set"), (3, "frozenset"),
                                            (11, "registered")])
def test_crafted_records_of_the_old_layout_never_crash(code: int, kind: str, depth: int) -> None:
    """Extension values nested `depth` deep (the 936-byte record of the audit had 200) decode
    or give DecodeError, in a small-stack thread; none crashes the reader."""
    record = _v1_nested(code, depth)
    lines = _run(f"""
        codec = MsgpackCodec()
        codec.register(Node, name="x.Node")
        record = bytes.fromhex({record.hex()!r})
        status, result = in_small_thread(lambda: codec.decode(record))
        print(status, type(result).__name__)
    """)
    status, result = lines[0].split()
    # Levels the reader counts: the extension and its array (and a typed value's state dict).
    levels = depth * (3 if kind == "registered" else 2)
    if kind == "set":  # a set cannot hold a set: the record is malformed at its second level
        assert (status, result) == ("error", "DecodeError")
    elif levels <= 1024:
        assert status == "ok", lines
    else:
        assert (status, result) == ("error", "DecodeError"), lines


@pytest.mark.parametrize("depth", [1000, 1030, 100_000])
def test_crafted_deep_records_are_decode_errors(depth: int) -> None:
    """Marker arrays (tuples, sets, frozensets, typed values) and lists nested past what the
    packer writes, and JSON tags nested past what orjson reads: DecodeError, no crash."""
    lines = _run(f"""
        depth = {depth}
        tuple_level = b"\\x92\\xc7\\x00\\x0c"   # [tuple marker, <next>]
        frozen_level = b"\\x92\\xc7\\x00\\x0e"  # [frozenset marker, <next>]
        set_level = b"\\x92\\xc7\\x00\\x0d"  # [set marker, <next>]: a set cannot hold one
        typed_level = b"\\x93\\xc7\\x00\\x0f\\xa6x.Node\\x81\\xa5child"  # Node(child=<next>)
        mixed_level = b"\\x91" + tuple_level
        codec = MsgpackCodec()
        codec.register(Node, name="x.Node")
        for name, level in [("tuple", tuple_level), ("frozenset", frozen_level),
                            ("set", set_level), ("typed", typed_level), ("mixed", mixed_level)]:
            record = b"\\xc1\\x00" + level * depth + b"\\xc0"
            status, result = in_small_thread(lambda: codec.decode(record))
            print("msgpack", name, status, type(result).__name__)
        json = JSONCodec()
        json.register(Node, name="x.Node")
        for name, (head, tail) in [("tuple", ('{{"$tuple":[', ']}}')),
                                   ("typed", ('{{"$obj":["x.Node",{{"child":', '}}]}}')),
                                   ("mixed", ('[{{"$frozenset":[', ']}}]'))]:
            record = (head * depth + "null" + tail * depth).encode()
            status, result = in_small_thread(lambda: json.decode(record))
            print("json", name, status, type(result).__name__)
    """)
    # Containers per level: a marker array is one; a typed value adds its state dict, a mixed
    # level a list; in JSON each tag adds its object.
    per_level = {("msgpack", "tuple"): 1, ("msgpack", "frozenset"): 1, ("msgpack", "typed"): 2,
                 ("msgpack", "set"): 2000,  # malformed from its second level on
                 ("msgpack", "mixed"): 2, ("json", "tuple"): 2, ("json", "typed"): 3,
                 ("json", "mixed"): 3}
    assert len(lines) == 8
    for line in lines:
        codec, name, status, result = line.split()
        if depth * per_level[codec, name] <= 1024:  # what msgpack's and orjson's readers take
            assert status == "ok", line
        else:
            assert (status, result) == ("error", "DecodeError"), line


def test_old_layout_records_still_read() -> None:
    """Records written before container markers decode to the same values as before."""
    import msgpack

    codec = MsgpackCodec()
    old = msgpack.packb({"t": msgpack.ExtType(1, msgpack.packb([1, msgpack.ExtType(
        3, msgpack.packb(["a"]))])), (0,): 1} if False else {
        "t": msgpack.ExtType(1, msgpack.packb([1, msgpack.ExtType(3, msgpack.packb(["a"]))])),
        "s": msgpack.ExtType(2, msgpack.packb([2, 1])),
        "d": msgpack.ExtType(6, b"2024-01-02"),
    })
    assert codec.decode(old) == {"t": (1, frozenset({"a"})), "s": {1, 2},
                                 "d": __import__("datetime").date(2024, 1, 2)}


def test_markers_out_of_place_are_refused() -> None:
    """A container marker anywhere but at the head of its array is a malformed record."""
    import msgpack

    for body in ([1, msgpack.ExtType(12, b"")], {"k": msgpack.ExtType(13, b"")},
                 [msgpack.ExtType(12, b""), msgpack.ExtType(12, b"")]):
        with pytest.raises(DecodeError, match="marker outside its place"):
            MsgpackCodec().decode(b"\xc1\x00" + msgpack.packb(body))
    with pytest.raises(DecodeError, match="extension type 99"):
        MsgpackCodec().decode(msgpack.packb([msgpack.ExtType(99, b"")]))


def test_json_decimal_ints_are_bounded_whatever_the_process_limit() -> None:
    """A crafted 1 MB decimal $int is refused before int() parses it (quadratic time), even in
    a process that lifted Python's int-digit limit; big ints doeff writes (hex) still read."""
    lines = _run("""
        sys.set_int_max_str_digits(0)
        codec = JSONCodec()
        try:
            codec.decode(b'{"$int":"' + b"7" * 1_000_000 + b'"}')
            print("decoded")
        except DecodeError as exc:
            print("refused", "hex" in str(exc))
        print(codec.decode(codec.encode(1 << 8_000_000)) == 1 << 8_000_000)
    """)
    assert lines == ["refused True", "True"]
