"""`doeff cache migrate`, run for real: all or nothing, pickles only on request, 100k records."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from test_cli import ROOT, Booby, Store, doeff, make_store, sample_records

from doeff.serde import MsgpackCodec, PickleCodec, peek, seal, unseal


@pytest.fixture(params=["sqlite", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty SQLite or LMDB store."""
    return make_store(request.param, tmp_path)


def test_migrate_reencodes_every_record(store: Store) -> None:
    """Every record ends up in the target codec with the same value, exact types included."""
    records = sample_records()
    store.fill(records)
    result = doeff("cache", "migrate", store.url, "--to", "json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"migrated 2 records of {store.url} to json (1 already json)\n"
    assert result.stderr == ""
    after = store.snapshot()
    assert {k: peek(v).tag for k, v in after.items()} == dict.fromkeys(after, "json")
    assert ({k: unseal(v, key=k) for k, v in after.items()}
            == {k: unseal(v, key=k) for k, v in records})
    assert after["summary"] == dict(records)["summary"]  # already json: left byte-for-byte


def test_migrate_refuses_pickles_without_the_flag(store: Store, tmp_path: Path) -> None:
    """Without --unsafe-pickle, migrate names every pickle-family record and changes nothing."""
    marker = tmp_path / "pickle-was-loaded"
    store.fill([*sample_records(), ("trap", seal(Booby(marker), PickleCodec(), key="trap")),
                ("p2", seal([1], PickleCodec(), key="p2"))])
    before = store.snapshot()
    result = doeff("cache", "migrate", store.url, "--to", "msgpack")
    assert result.returncode == 1
    first, *keys = result.stderr.splitlines()
    assert "2 pickle-family records" in first and "--unsafe-pickle" in first
    assert sorted(keys) == ["  p2 (pickle)", "  trap (pickle)"]
    assert store.snapshot() == before
    assert not marker.exists()


def test_migrate_with_unsafe_pickle_moves_pickles_off_pickle(store: Store) -> None:
    """With --unsafe-pickle, pickle records are read and re-encoded like any other."""
    store.fill([("p", seal({"a": (1, 2)}, PickleCodec(), key="p")),
                ("m", seal(3, MsgpackCodec(), key="m"))])
    result = doeff("cache", "migrate", store.url, "--to", "msgpack", "--unsafe-pickle")
    assert result.returncode == 0, result.stderr
    after = store.snapshot()
    assert peek(after["p"]).tag == "msgpack" and unseal(after["p"], key="p") == {"a": (1, 2)}


def test_migrate_failure_changes_nothing_and_lists_the_keys(store: Store) -> None:
    """Values the target cannot carry, and unreadable records, are listed; nothing is written."""
    store.fill([
        *sample_records(),
        ("ratio", seal(Fraction(1, 3), PickleCodec(), key="ratio")),
        ("complex", seal({"z": 1 + 2j}, PickleCodec(), key="complex")),
        ("foreign", b"not a doeff record"),
        ("fine", seal([1, 2], PickleCodec(), key="fine")),
    ])
    before = store.snapshot()
    result = doeff("cache", "migrate", store.url, "--to", "msgpack", "--unsafe-pickle")
    assert result.returncode == 1
    first, *lines = result.stderr.splitlines()
    assert first.startswith(f"doeff: cannot migrate 3 of 7 records of {store.url} to msgpack")
    assert "nothing was changed" in first
    assert sorted(line.split(":")[0] for line in lines) == ["  complex", "  foreign", "  ratio"]
    assert "Fraction" in result.stderr and "complex" in result.stderr
    assert result.stdout == ""
    assert store.snapshot() == before


def test_migrate_unknown_codec(store: Store) -> None:
    """An unknown target codec is a one-line usage error naming the known ones."""
    result = doeff("cache", "migrate", store.url, "--to", "yaml")
    assert result.returncode == 2
    assert result.stderr == (
        "doeff: unknown codec 'yaml'; choose one of cloudpickle, json, msgpack, pickle\n"
    )


def fill_fast(store: Store, n: int) -> None:
    """`n` msgpack records written in one transaction (100k separate commits would take long)."""
    codec = MsgpackCodec()
    with store.open() as kv:
        kv.put_many(
            (f"step:{i:06d}", seal({"i": i, "row": (i, str(i))}, codec, key=f"step:{i:06d}"))
            for i in range(n)
        )


def test_migrate_100k_records(tmp_path: Path) -> None:
    """100,000 records migrate in one go, with no progress output when stderr is not a TTY."""
    store = make_store("sqlite", tmp_path)
    fill_fast(store, 100_000)
    result = doeff("cache", "migrate", store.url, "--to", "json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("migrated 100000 records")
    assert result.stderr == ""
    after = store.snapshot()
    assert len(after) == 100_000
    assert all(peek(raw).tag == "json" for raw in after.values())
    assert unseal(after["step:099999"], key="step:099999") == {"i": 99_999,
                                                               "row": (99_999, "99999")}


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """With stderr on a terminal, a long migrate draws a progress bar that reaches 100%."""
    store = make_store("lmdb", tmp_path)
    fill_fast(store, 5_000)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "doeff", "cache", "migrate", store.url, "--to", "json"],
        stdout=subprocess.PIPE, stderr=slave, cwd=ROOT,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal (EIO on Linux)
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.startswith(b"migrated 5000 records")
    assert b"re-encoding to json [" in seen and b"100% 5000/5000" in seen
