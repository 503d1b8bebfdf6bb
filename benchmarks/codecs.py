"""Codec throughput beside the raw libraries, in one run: `python benchmarks/codecs.py`.

For each payload, every codec's encode+decode time is printed beside the library it wraps
(pickle, msgpack, orjson) and stdlib json, with the ratio; then the envelope's added cost; then
data-science values: a 100 MB float64 array through MsgpackCodec beside pickle protocol 5 (time
and peak memory), and a 1,000,000-row mixed-dtype DataFrame beside pickle and raw Arrow IPC, each
producing and consuming bytes, as a store holds them.
Ratios matter, absolute times drift on a shared machine. Pass --quick for a shorter run (and a
10 MB array, a 100,000-row frame).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import sys
import time
import tracemalloc
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
    quick = "--quick" in args
    array_vs_pickle(10 if quick else 100)
    frame_vs_pickle_and_arrow(100_000 if quick else 1_000_000)


def best_of(fn: Callable[[], object], rounds: int) -> float:
    """The fastest of `rounds` calls of `fn`, in seconds (one untimed warm-up first)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def peak_bytes(fn: Callable[[], object]) -> int:
    """The most memory `fn` held at once beyond what existed before it, by tracemalloc (which
    sees numpy's data buffers too)."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def array_vs_pickle(megabytes: int) -> None:
    """A float64 array through MsgpackCodec beside pickle protocol 5: time and peak memory of an
    encode+decode round trip (goals: <= 1.2x the time, <= 2x the array in memory)."""
    try:
        import numpy as np
    except ImportError:
        print("\nnumpy not installed: pip install 'doeff[numpy]' to measure arrays")
        return
    arr = np.random.default_rng(0).random(megabytes * 1024 * 1024 // 8)
    codec = MsgpackCodec()
    ours = lambda: codec.decode(codec.encode(arr))  # noqa: E731
    theirs = lambda: pickle.loads(pickle.dumps(arr, protocol=5))  # noqa: E731
    assert np.array_equal(ours(), arr)  # type: ignore[arg-type]
    t_ours, t_pickle = best_of(ours, 5), best_of(theirs, 5)
    m_ours, m_pickle = peak_bytes(ours), peak_bytes(theirs)
    print(f"\n{megabytes} MB float64 array, encode+decode (goal: <= 1.20x pickle, "
          "peak <= 2.0x the array)")
    print(f"  MsgpackCodec        {t_ours * 1e3:8.1f} ms  peak {m_ours / arr.nbytes:4.2f}x array")
    print(f"  pickle protocol 5   {t_pickle * 1e3:8.1f} ms  peak {m_pickle / arr.nbytes:4.2f}x "
          "array")
    print(f"  ratio               {t_ours / t_pickle:8.2f}x")


def frame_vs_pickle_and_arrow(rows: int) -> None:
    """A mixed-dtype DataFrame through MsgpackCodec beside pickle protocol 5 and raw Arrow IPC
    (goal: <= 1.3x the faster of the two)."""
    try:
        import numpy as np
        import pandas as pd  # type: ignore[import-untyped]
        import pyarrow as pa  # type: ignore[import-untyped]
    except ImportError:
        print("\npandas/pyarrow not installed: pip install 'doeff[pandas]' to measure frames")
        return
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "price": rng.random(rows),
        "qty": rng.integers(0, 1000, rows).astype(np.int32),
        "ok": rng.random(rows) < 0.5,
        "at": pd.date_range("2024-01-01", periods=rows, freq="s"),
        "name": pd.Series([f"customer {i % 5000}" for i in range(rows)]),
        "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], rows)),
        "score": pd.array(np.where(rng.random(rows) < 0.1, None, rng.integers(0, 100, rows)),
                          dtype="Int64"),
    })
    codec = MsgpackCodec()

    def arrow(as_bytes: bool = True) -> object:
        table = pa.Table.from_pandas(frame, preserve_index=None)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        stream = sink.getvalue()
        if as_bytes:  # what a store holds: Python bytes (read back in place, without a copy)
            stream = pa.py_buffer(stream.to_pybytes())
        return pa.ipc.open_stream(stream).read_all().to_pandas()

    ours = lambda: codec.decode(codec.encode(frame))  # noqa: E731
    theirs = lambda: pickle.loads(pickle.dumps(frame, protocol=5))  # noqa: E731
    pd.testing.assert_frame_equal(ours(), frame, check_exact=True)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(arrow(), frame, check_exact=True)  # type: ignore[arg-type]
    t_ours, t_pickle, t_arrow = best_of(ours, 5), best_of(theirs, 5), best_of(arrow, 5)
    t_arrow_pool = best_of(lambda: arrow(as_bytes=False), 5)
    print(f"\n{rows:,}-row DataFrame (int64, float64, int32, bool, datetime64, str, category, "
          "Int64), encode+decode to and from bytes (goal: <= 1.30x the faster baseline)")
    print(f"  MsgpackCodec        {t_ours * 1e3:8.1f} ms")
    print(f"  pickle protocol 5   {t_pickle * 1e3:8.1f} ms  ratio {t_ours / t_pickle:5.2f}x")
    print(f"  raw Arrow IPC       {t_arrow * 1e3:8.1f} ms  ratio {t_ours / t_arrow:5.2f}x  (the "
          "stream as bytes and back)")
    print(f"  vs the faster       {t_ours / min(t_pickle, t_arrow):8.2f}x")
    # Not a baseline: this stream never leaves Arrow's memory pool, whose pages are already
    # mapped, while any codec (and pickle, and a store) needs a fresh bytes object of tens of
    # MB, which costs page faults on first touch (about half of encoding here).
    print(f"  Arrow IPC, no bytes {t_arrow_pool * 1e3:8.1f} ms  ratio {t_ours / t_arrow_pool:5.2f}x"
          "  (not a baseline: the stream stays in Arrow's pool, no store could hold it)")


if __name__ == "__main__":
    main()
