"""A full disk: puts fail with StorageFullError and every value stored before stays intact.

The store lives on a real 512 KiB tmpfs, mounted in a private mount namespace (`unshare -m`)
so nothing on the machine sees it. That needs root; CI runs as root, so there the test must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKER = textwrap.dedent("""
    import json, os, sys
    from doeff.errors import StorageFullError
    from doeff.serde import PickleCodec
    from doeff.storage import Durable, LMDBKV, SQLiteKV

    backend, where = sys.argv[1], sys.argv[2]
    kv = SQLiteKV(os.path.join(where, "wf.db")) if backend == "sqlite" else \\
        LMDBKV(os.path.join(where, "wf.lmdb"), map_size=64 * 1024)
    store = Durable(kv, PickleCodec())
    acknowledged, error = [], None
    store.put("first", "keep me")
    for i in range(10_000):
        try:
            store.put(f"k{i}", os.urandom(4096))  # incompressible, so the disk really fills
        except StorageFullError as exc:
            error = str(exc)
            break
        acknowledged.append(f"k{i}")
    overwrite_error = None
    try:
        store.put("first", os.urandom(64 * 1024))
    except StorageFullError as exc:
        overwrite_error = type(exc).__name__
    print(json.dumps({
        "error": error,
        "overwrite_error": overwrite_error,
        "acknowledged": len(acknowledged),
        "all_readable": all(len(store.get(k)) == 4096 for k in acknowledged),
        "first": store.get("first"),
        "failed_key_absent": not store.exists(f"k{len(acknowledged)}"),
    }))
""")

SCRIPT = """
set -e
mount -t tmpfs -o size=512k tmpfs "$1"
exec "$2" -c "$3" "$4" "$1"
"""


def _unshare_reason() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is missing (util-linux)"
    if os.geteuid() != 0:
        return "mounting a small tmpfs in a private mount namespace needs root"
    return None


@pytest.mark.parametrize("backend", ["sqlite", "lmdb"])
def test_full_disk_raises_storage_full_and_keeps_stored_values(
    backend: str, tmp_path: Path
) -> None:
    """On a full filesystem a put raises StorageFullError; earlier values and the key's old
    value stay readable, and the failed key is not stored."""
    reason = _unshare_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot simulate a full disk in CI: {reason}")
        pytest.skip(f"cannot simulate a full disk here: {reason}")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", SCRIPT, "sh", str(mount), sys.executable, WORKER, backend],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["error"] is not None, "the disk never filled up"
    assert "free disk space" in out["error"]
    assert out["acknowledged"] > 10
    assert out["all_readable"] is True
    assert out["first"] == "keep me"
    assert out["overwrite_error"] == "StorageFullError"
    assert out["failed_key_absent"] is True


OPEN_ON_FULL_DISK = textwrap.dedent("""
    import json, os, sys
    from doeff.errors import StorageFullError
    from doeff.storage import LMDBKV, SQLiteKV

    backend, where = sys.argv[1], sys.argv[2]
    def open_store(name, **options):
        path = os.path.join(where, name)
        return (SQLiteKV(path + ".db", **options) if backend == "sqlite"
                else LMDBKV(path, **options))

    def attempt(action):
        try:
            return action()
        except StorageFullError as exc:
            return "StorageFullError: " + str(exc)

    with open_store("existing") as kv:
        kv.put("kept", b"value")
    with open(os.path.join(where, "filler"), "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(os.urandom(4096))
        except OSError:
            pass  # the filesystem is full now

    def reopen():
        with open_store("existing") as kv:  # the environment was closed above: a real reopen
            return [kv.get("kept").decode(), attempt(lambda: kv.put("more", os.urandom(65536)))]

    def read_only():
        with open_store("existing", readonly=True) as kv:
            return kv.get("kept").decode()

    print(json.dumps({"new": attempt(lambda: open_store("new").close()),
                      "reopen": attempt(reopen), "readonly": read_only()}))
""")


@pytest.mark.parametrize("backend", ["sqlite", "lmdb"])
def test_opening_a_store_on_a_full_disk_raises_storage_full(
    backend: str, tmp_path: Path
) -> None:
    """On a full filesystem, creating a store raises StorageFullError (never a crash such as
    SIGBUS); a store made before the disk filled reads with readonly=True, and a read-write
    reopen either reads and refuses the write (LMDB) or refuses to open (SQLite, which must
    create its WAL index), both with StorageFullError."""
    reason = _unshare_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"cannot simulate a full disk in CI: {reason}")
        pytest.skip(f"cannot simulate a full disk here: {reason}")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", SCRIPT, "sh", str(mount), sys.executable,
         OPEN_ON_FULL_DISK, backend],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    out = json.loads(proc.stdout)
    assert out["new"].startswith("StorageFullError") and "free disk space" in out["new"], out
    if backend == "lmdb":
        assert out["reopen"][0] == "value", out
        assert out["reopen"][1].startswith("StorageFullError"), out
    else:
        assert out["reopen"].startswith("StorageFullError"), out
    assert out["readonly"] == "value"
