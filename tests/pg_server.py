"""A throwaway PostgreSQL server for the tests and the benchmark, started from the OS's binaries.

`start_server()` runs `initdb` in a temporary directory and `postgres` on 127.0.0.1 at a free
port with trust auth, as an unprivileged user when this process is root (PostgreSQL refuses to
run as root). As a pytest plugin (listed in conftest's `pytest_plugins`) it starts one server per
session on first use and stops it at the end; outside CI the Postgres tests skip when no server
can be started, with `CI` set they fail instead.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENABLE_HINT = (
    "install the PostgreSQL server (e.g. `apt-get install postgresql`, which `.ci/run` does) "
    "so that initdb and postgres are on PATH or under /usr/lib/postgresql/*/bin"
)
# Test data is thrown away: skipping fsync makes every commit cheap without changing semantics.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
}
_PG_USERS = ("postgres", "doeff-pg", "nobody")  # tried in this order when running as root
_PR_SET_PDEATHSIG = 1


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why and how to fix it."""


def find_bindir() -> Path | None:
    """The directory holding initdb and postgres: $DOEFF_PG_BINDIR, PATH, newest Debian layout."""
    forced = os.environ.get("DOEFF_PG_BINDIR")
    if forced is not None:  # also lets a test pretend the server is not installed
        return Path(forced) if os.path.exists(os.path.join(forced, "initdb")) else None
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for bindir in reversed(candidates):
        if os.path.exists(os.path.join(bindir, "initdb")):
            return Path(bindir)
    return None


def _pg_user() -> pwd.struct_passwd | None:
    """The account to run the server as: None to stay as we are (not root)."""
    if os.geteuid() != 0:
        return None
    for name in _PG_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
        if name == "doeff-pg" and shutil.which("useradd"):
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", name], capture_output=True, check=False)
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
    raise ServerUnavailable("running as root and found no unprivileged user to run postgres as")


def _die_with_parent() -> None:
    # Runs in the child after the user switch (which would clear it): if the test process is
    # SIGKILLed, the server gets SIGQUIT (immediate shutdown) instead of living on.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgServer:
    """A running throwaway server; `dsn` reaches it as superuser `doeff`, `stop()` ends it."""

    def __init__(self, *, settings: Mapping[str, str] = FAST_SETTINGS,
                 start_timeout: float = 60.0) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise ServerUnavailable(f"no PostgreSQL server binaries found; {ENABLE_HINT}")
        self.bindir = bindir
        self.user = _pg_user()
        self.dir = Path(tempfile.mkdtemp(prefix="doeff-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.settings = settings
        self.start_timeout = start_timeout
        try:
            if self.user is not None:
                os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
            self._initdb()
            self._start(settings, start_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def dsn(self) -> str:
        """A libpq connection string for the server's `postgres` database."""
        return f"host=127.0.0.1 port={self.port} user=doeff dbname=postgres connect_timeout=10"

    def _popen(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        if self.user is not None:
            kw.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        # A neutral cwd: the server's user may not be allowed into ours.
        return subprocess.Popen(args, cwd=self.dir, **kw)

    def _initdb(self) -> None:
        proc = self._popen([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "doeff",
                            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise ServerUnavailable(
                f"initdb failed (exit {proc.returncode}): {out.decode(errors='replace')[-2000:]}")

    def _start(self, settings: Mapping[str, str], timeout: float) -> None:
        import psycopg

        for _attempt in range(3):  # the free port may be taken between probing and binding
            self.port = self.port or _free_port()
            options = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                       "unix_socket_directories": str(self.dir), "max_connections": "200",
                       **settings}
            args = [str(self.bindir / "postgres"), "-D", str(self.data)]
            for name, value in options.items():
                args += ["-c", f"{name}={value}"]
            with open(self.log, "ab") as log:
                self.proc = self._popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    psycopg.connect(self.dsn, connect_timeout=2).close()
                    return
                except psycopg.OperationalError:
                    time.sleep(0.05)
            if self.proc.poll() is None:
                self.halt()
                raise ServerUnavailable(f"postgres did not accept connections in {timeout:.0f} s:"
                                        f" {self.log_tail()}")
            if "already in use" not in self.log_tail():
                break
            self.port = 0
        code = self.proc.returncode if self.proc else "?"
        raise ServerUnavailable(f"postgres exited with {code}: {self.log_tail()}")

    def log_tail(self) -> str:
        """The last lines of the server's log."""
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def halt(self) -> None:
        """Stop the server process (fast shutdown, then kill), keeping its data; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: abort clients, no checkpoint wait
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)

    def restart(self) -> None:
        """Start the halted server again on the same port and data."""
        self._start(self.settings, self.start_timeout)

    def stop(self) -> None:
        """Stop the server and delete its directory; idempotent."""
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


def table_for(directory: Path | str) -> str:
    """A table name unique to `directory` (the contract suite's 'same dir, same data')."""
    return "kv_" + hashlib.sha256(os.fsencode(str(directory))).hexdigest()[:24]


# -- one server per test session ----------------------------------------------------------------

_lock = threading.Lock()
_server: PgServer | None = None
_failure: str | None = None


def session_server() -> PgServer:
    """The session's server, started on first call; ServerUnavailable if it cannot start."""
    global _server, _failure
    with _lock:
        if _server is None and _failure is None:
            try:
                _server = PgServer()
                atexit.register(_server.stop)
            except (ServerUnavailable, OSError, subprocess.SubprocessError) as exc:
                _failure = str(exc)
        if _server is None:
            raise ServerUnavailable(_failure)
        return _server


def require_server() -> PgServer:
    """The session's server; skips the test when none can start, fails it instead under CI."""
    import pytest

    try:
        return session_server()
    except ServerUnavailable as exc:
        message = f"PostgreSQL tests need a server: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(f"{message}; to run them, {ENABLE_HINT}")


def unavailable() -> str | None:
    """For storage_fixtures.KVBackend: None when a server runs (skip or fail otherwise)."""
    require_server()
    return None


def open_kv(directory: Path) -> Any:
    """A PostgresKV on the session server, in a table named after `directory`."""
    from doeff.storage.postgres import PostgresKV

    return PostgresKV(session_server().dsn, table=table_for(directory))


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Stop the session's server once every test has run, passed or not."""
    if _server is not None:
        _server.stop()
