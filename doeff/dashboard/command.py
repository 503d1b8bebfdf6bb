"""`doeff dashboard STORE`: serve the dashboard of a store until Ctrl-C or SIGTERM.

Checks come before anything is opened: a --host off loopback needs --token, and the web
framework must be installed (the `doeff[dashboard]` extra); each failure is one line on stderr
and exit status 2. Once the socket listens, one line on stdout says where:
``doeff dashboard: serving http://127.0.0.1:8765/``.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

from doeff.cli.args import add_signing_key, add_store, add_unsafe_pickle
from doeff.cli.errors import EXIT_FAILED, CLIError
from doeff.cli.output import warn
from doeff.cli.scan import signing_keys
from doeff.cli.store import FORMS, open_store, store_label
from doeff.dashboard.guard import WILDCARDS, host_names, is_loopback
from doeff.errors import install_hint

TOKEN_ENV = "DOEFF_DASHBOARD_TOKEN"
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")


def build_parser() -> argparse.ArgumentParser:
    """`doeff dashboard`'s arguments."""
    p = argparse.ArgumentParser(
        prog="doeff dashboard",
        description="Serve a live web dashboard of STORE: its runs (status, K stacks, steps, "
        "errors; cancel, pause, resume) and its cache records (values of safe codecs, "
        "statistics). Stops on Ctrl-C or SIGTERM.",
        epilog=f"STORE is {FORMS}. Needs the dashboard extra: {install_hint('dashboard')}.",
    )
    add_store(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other than loopback "
                   "needs --token)")
    p.add_argument("--port", type=int, default=8765,
                   help="port to listen on (default 8765; 0 picks a free one)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                   help=f"require this token on every request (default ${TOKEN_ENV}); open "
                   "the printed address, which carries it once, or send Authorization: Bearer")
    p.add_argument("--read-only", action="store_true",
                   help="open the store read-only, hide the controls and refuse every change")
    add_unsafe_pickle(p)
    add_signing_key(p)
    return p


def _check(ns: argparse.Namespace) -> None:
    if ns.token is not None and not _TOKEN.fullmatch(ns.token):
        raise CLIError("--token: use letters, digits and . _ ~ - only (it goes into a URL and "
                       "a cookie), e.g. the output of: python -c 'import secrets; "
                       "print(secrets.token_urlsafe())'")
    if not is_loopback(ns.host) and ns.token is None:
        raise CLIError(f"--host {ns.host} can be reached from other machines: give --token "
                       f"(or ${TOKEN_ENV}) so that only those who have it get in")
    if not 0 <= ns.port <= 65535:
        raise CLIError(f"--port {ns.port}: a port is 0 to 65535")


def _frameworks() -> None:
    """Import the extra's packages, or say how to install them."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CLIError(f"the dashboard needs the dashboard extra ({exc}); install it with "
                       f"{install_hint('dashboard')}") from exc


def _listen(host: str, port: int) -> socket.socket:
    # `localhost` may resolve to ::1 first while a browser tries 127.0.0.1: take the one
    # address every client tries.
    bind = "127.0.0.1" if host.lower() == "localhost" else host
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        hint = "; another program has that port: choose another --port (--port 0 picks a " \
            "free one)" if exc.errno == errno.EADDRINUSE else ""
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from exc
    sock.set_inheritable(True)
    return sock


def serve(ns: argparse.Namespace) -> int:
    """Open the store, listen, print the address, serve until told to stop."""
    import uvicorn

    from doeff.dashboard.app import Settings, build_app
    from doeff.dashboard.data import Policy

    keys = signing_keys(ns)
    kv = open_store(ns.store, readonly=ns.read_only)
    sock = _listen(ns.host, ns.port)
    port = sock.getsockname()[1]
    shown = f"[{ns.host}]" if ":" in ns.host else ns.host
    url = f"http://{shown}:{port}/" + (f"?token={ns.token}" if ns.token else "")
    settings = Settings(kv=kv, store=store_label(ns.store), read_only=ns.read_only,
                        policy=Policy(unsafe_pickle=ns.unsafe_pickle, signing_keys=keys))
    app = build_app(settings, port=port, token=ns.token,
                    host_names=host_names(ns.host if ns.host not in WILDCARDS else "", port))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                            ws="none", timeout_graceful_shutdown=2)

    class Server(uvicorn.Server):
        """uvicorn's server, saying where it listens once it does, and ending the live streams
        as soon as it is asked to stop (they would otherwise hold the shutdown)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                print(f"doeff dashboard: serving {url}", flush=True)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            settings.closing.set()
            super().handle_exit(sig, frame)

    # uvicorn raises the signal it stopped for again once it has shut down; these handlers
    # take it, so Ctrl-C and SIGTERM end the command quietly with status 0.
    main_thread = threading.current_thread() is threading.main_thread()
    quiet: dict[int, Any] = {s: signal.signal(s, _ignore) for s in (
        signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        Server(config).run(sockets=[sock])
    finally:
        for s, handler in quiet.items():
            signal.signal(s, handler)
        sock.close()
        kv.close()
    return 0


def _ignore(sig: int, frame: FrameType | None) -> None:
    """The signal was handled already (uvicorn shut down for it)."""


def main(argv: list[str]) -> int:
    """Entry point of `doeff dashboard ARGV`; the exit status."""
    ns = build_parser().parse_args(argv)
    try:
        _check(ns)
        _frameworks()
        return serve(ns)
    except CLIError as exc:
        warn(str(exc))
        return exc.code
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # a bug or an unexpected failure: still one line, not a traceback
        warn(f"unexpected {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    finally:
        sys.stdout.flush()


__all__ = ["TOKEN_ENV", "build_parser", "main"]
