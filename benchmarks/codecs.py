"""Codec throughput beside the raw libraries, in one run: `python benchmarks/codecs.py`.

For each payload, every codec's encode+decode time is printed beside the library it wraps
(pickle, msgpack, orjson) and stdlib json, with the ratio; then the envelope's added cost.
Ratios matter, absolute times drift on a shared machine. Pass --quick for a shorter run.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import msgpack
import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from doeff.serde import (
    CloudpickleCodec,
    Codec,
    JSONCodec,
    MsgpackCodec,
    PickleCodec,
    seal,
    unseal,
)


@dataclass(frozen=True)
class StepResult:
    """The dataclass payload: a datetime and a tuple, which JSON and msgpack lack natively."""

    name: str
    finished: datetime
    shape: tuple[int, int]
    score: float


def payloads() -> dict[str, Any]:
    """The fixed payload set: small record, ~5 KB nested result, 1 MiB bytes, floats, dataclass."""
    nested = {
        "rows": [
            {"id": i, "name": f"row {i}", "value": i * 1.5, "ok": i % 3 == 0,
             "tags": ["alpha", "beta"], "meta": {"source": "db", "parent": None}}
            for i in range(40)
        ],
        "summary": {"count": 40, "mean": 29.25, "label": "nightly"},
    }
    return {
        "small record": {"id": 7, "name": "step result", "score": 0.93, "tags": ["a", "b", "c"]},
        f"nested ~{len(orjson.dumps(nested)) // 1000} KB": nested,
        "1 MiB bytes": bytes(range(256)) * 4096,
        "10,000 floats": [i * 0.731 for i in range(10_000)],
        "dataclass": StepResult("fetch", datetime(2024, 5, 1, 12, 30, tzinfo=timezone(
            timedelta(hours=2))), (640, 480), 0.5),
    }


RAW: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "pickle": (lambda v: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads),
    "msgpack": (msgpack.packb, msgpack.unpackb),
    "orjson": (orjson.dumps, orjson.loads),
    "json": (json.dumps, json.loads),
}
# Which raw library each codec wraps (JSONCodec is also compared with stdlib json).
WRAPS = {"pickle": ["pickle"], "cloudpickle": ["pickle"], "msgpack": ["msgpack"],
         "json": ["orjson", "json"]}


def per_call(fn: Callable[[], object], budget: float) -> float:
    """Best-of-3 seconds per call of `fn`, each round running for about `budget` seconds."""
    fn()
    count, started = 1, time.perf_counter()
    while time.perf_counter() - started < budget / 10:
        fn()
        count += 1
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count * 10):
            fn()
        best = min(best, (time.perf_counter() - started) / (count * 10))
    return best


def round_trip(
    encode: Callable[[Any], Any], decode: Callable[[Any], Any], value: Any
) -> Callable[[], object]:
    """A thunk that encodes then decodes `value`."""
    return lambda: decode(encode(value))


def raw_time(lib: str, value: Any, budget: float) -> tuple[float | None, str]:
    """Seconds per raw round trip, or None if the library cannot carry the value; and a note."""
    encode, decode = RAW[lib]
    try:
        back = decode(encode(value))
    except (TypeError, ValueError):
        return None, "can't"
    note = "" if back == value and type(back) is type(value) else " (lossy)"
    return per_call(round_trip(encode, decode, value), budget), note


def main(argv: list[str] | None = None) -> None:
    """Print the table; `--quick` shortens each measurement."""
    args = sys.argv[1:] if argv is None else argv
    budget = 0.02 if "--quick" in args else 0.1
    codecs: list[Codec] = [PickleCodec(), CloudpickleCodec(), MsgpackCodec(types=[StepResult]),
                           JSONCodec(types=[StepResult])]
    print(f"{'payload':16} {'codec':12} {'µs/op':>9}   {'raw lib':16} {'µs/op':>9} {'ratio':>6}")
    envelope_rows = []
    for name, value in payloads().items():
        raw_cache: dict[str, tuple[float | None, str]] = {}
        for codec in codecs:
            ours = per_call(round_trip(codec.encode, codec.decode, value), budget)
            for lib in WRAPS[codec.tag]:
                if lib not in raw_cache:
                    raw_cache[lib] = raw_time(lib, value, budget)
                raw, note = raw_cache[lib]
                raw_text = f"{raw * 1e6:9.2f}" if raw else f"{'n/a':>9}"
                ratio = f"{ours / raw:5.2f}x" if raw else "     -"
                print(f"{name:16} {codec.tag:12} {ours * 1e6:9.2f}   {lib + note:16} "
                      f"{raw_text} {ratio}")
        codec = codecs[2]
        bare = per_call(round_trip(codec.encode, codec.decode, value), budget)
        sealed = per_call(lambda c=codec, v=value: unseal(seal(v, c), c), budget)
        envelope_rows.append((name, bare, sealed))
    print("\nenvelope cost (seal+unseal vs encode+decode, MsgpackCodec)")
    for name, bare, sealed in envelope_rows:
        print(f"{name:16} {bare * 1e6:9.2f} µs -> {sealed * 1e6:9.2f} µs  "
              f"(+{(sealed - bare) * 1e6:.2f} µs per value)")


if __name__ == "__main__":
    main()
