"""`doeff demo` names the command that opens the dashboard on its store, and that command
shows the demo's run: killed once (lost), then completed."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_dashboard_api import dashboard

pytest.importorskip("uvicorn")


def test_the_demo_prints_a_dashboard_command_that_shows_its_run(tmp_path: Path) -> None:
    """The printed `dashboard STORE` serves the run `nightly`: completed on attempt 2, its
    first attempt lost to the SIGKILL, its five steps in the cache."""
    path = tmp_path / "demo.db"
    done = subprocess.run([sys.executable, "-m", "doeff", "demo", "--db", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("see its runs"))
    command = shlex.split(line.split(": ", 1)[1])
    assert command[-2:] == ["dashboard", str(path)]
    with dashboard(command[-1]) as (url, _), httpx.Client(base_url=url) as c:
        record = c.get("/api/runs/nightly").json()
        assert record["status"] == "completed" and record["attempt"] == 2
        assert [a["status"] for a in record["attempts"]] == ["lost"]
        keys = [r["key"] for r in c.get("/api/cache", params={"prefix": "demo:"}).json()]
        assert len(keys) == 5
