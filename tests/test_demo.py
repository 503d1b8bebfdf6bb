"""`doeff demo`: the README's first command, run for real (a worker SIGKILLed, then resumed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from doeff.storage import SQLiteKV


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m doeff demo ARGS` to its end."""
    return subprocess.run([sys.executable, "-m", "doeff", "demo", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_demo_resumes_without_rerunning_and_removes_its_temporary_store() -> None:
    """The resumed run reads back every step the killed one finished; the scratch store goes."""
    done = demo()
    assert done.returncode == 0, done.stderr
    assert "SIGKILL while running" in done.stdout
    assert re.search(r"attempt 2 read back (\d) of the \1 steps attempt 1 finished, re-ran 0",
                     done.stdout), done.stdout
    store = re.search(r"^store: (\S+)", done.stdout, re.MULTILINE)
    assert store is not None
    assert "demo:render" in done.stdout  # the `doeff cache ls` listing it shows
    # `doeff runs show` of the killed run (lost, where it was: the demo's own line) and of the
    # resumed one (completed, the finished steps read back)
    killed, resumed = done.stdout.split("$ doeff runs show")[1:3]
    assert re.search(r"^status\s+lost: its process \(pid \d+", killed, re.MULTILINE), killed
    assert re.search(r"nightly_report\(\) waiting at demo\.py:\d+", killed), killed
    assert re.search(r"^status\s+completed", resumed, re.MULTILINE), resumed
    assert re.search(r"steps\s+5 \(2 computed, 3 read back\)", resumed), resumed
    assert not Path(store.group(1)).parent.exists()


def test_demo_keep_leaves_the_store_for_inspection() -> None:
    """With --keep the store outlives the demo and holds all five steps."""
    done = demo("--keep")
    assert done.returncode == 0, done.stderr
    store = re.search(r"^store: (\S+)", done.stdout, re.MULTILINE)
    assert store is not None
    path = Path(store.group(1))
    try:
        with SQLiteKV(path) as kv:
            assert sorted(kv.keys()) == sorted(
                f"demo:{s}" for s in ("fetch_orders", "enrich", "score_risk", "summarize",
                                      "render"))
    finally:
        for f in path.parent.iterdir():
            f.unlink()
        path.parent.rmdir()


def test_demo_refuses_to_touch_a_file_it_did_not_create(tmp_path: Path) -> None:
    """`--db` naming someone else's file exits 2 and leaves the file byte-identical."""
    precious = tmp_path / "precious.db"
    precious.write_bytes(b"not a database, but mine")
    done = demo("--db", str(precious))
    assert done.returncode == 2
    assert "left untouched" in done.stderr
    assert precious.read_bytes() == b"not a database, but mine"

    other = tmp_path / "other.db"
    with SQLiteKV(other) as kv:
        kv.put("invoice:1", b"paid")
    before = other.read_bytes()
    done = demo("--db", str(other))
    assert done.returncode == 2 and "did not write" in done.stderr
    assert other.read_bytes() == before


def test_demo_reuses_its_own_store(tmp_path: Path) -> None:
    """A second demo on the store of a first one starts it afresh and keeps the file."""
    path = tmp_path / "wf.db"
    assert demo("--db", str(path)).returncode == 0
    again = demo("--db", str(path))
    assert again.returncode == 0, again.stderr
    assert "attempt 1" in again.stdout and "fetch_orders   ran" in again.stdout
    assert path.exists()
