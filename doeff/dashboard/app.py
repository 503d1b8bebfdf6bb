"""The dashboard's ASGI app (Starlette): three pages, their JSON API and two event streams.

Pages are the package's own HTML, CSS and JavaScript (no build step, nothing from the network);
the server fills in only the session's CSRF token and, in read-only mode, leaves the controls
out. The live views are server-sent events: one poll of the store per interval per stream,
reading only what changed since the last (see `RunReader`), and an event only when what the page
shows changed.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from doeff.cli.output import show_key
from doeff.dashboard.data import (
    CACHE_LIMIT,
    MAX_LIMIT,
    RUNS_PAGE,
    Policy,
    RunFeed,
    RunListFeed,
    RunReader,
    cache_rows,
    run_detail,
    run_page,
    run_summary,
    store_stats,
)
from doeff.dashboard.guard import Guard
from doeff.errors import DecodeError, InvalidOptionError, RunError, RunNotFoundError
from doeff.runs import cancel_run, pause_run, resume_run
from doeff.runs.record import STATUSES
from doeff.storage.base import KVStore

POLL = 0.2  # seconds between two looks at the store by a live stream
KEEPALIVE = 5.0  # seconds of silence after which a stream sends a comment (finds gone clients)
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
CONTROLS = ("<!-- controls -->", "<!-- /controls -->")
ACTIONS = {"cancel": cancel_run, "pause": pause_run, "resume": resume_run}


@dataclass
class Settings:
    """What one dashboard serves, and how."""

    kv: KVStore
    store: str  # the STORE argument as shown (a password hidden)
    read_only: bool = False
    policy: Policy = field(default_factory=Policy)
    poll: float = POLL
    closing: threading.Event = field(default_factory=threading.Event)  # set when shutting down


def _static_files() -> dict[str, bytes]:
    folder = resources.files("doeff.dashboard") / "static"
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}


def _dumps(value: Any) -> str:
    # ensure_ascii: text from a store goes out as \u escapes, so no byte of it can end an
    # event's data line or fail to encode (Starlette's own JSON writes raw UTF-8).
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or infinity (a store's damaged timestamp), which JSON cannot hold
        return json.dumps(_finite(value), ensure_ascii=True, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _run_id(request: Request) -> str:
    """The run a request names: in its path, or, for the ids `.` and `..` (which browsers
    resolve away as path segments, even percent-encoded), in `?id=` after an empty one."""
    return request.path_params["run_id"] or request.query_params.get("id", "")


class JSON(JSONResponse):
    """A JSON answer written as ASCII (see `_dumps`)."""

    def render(self, content: Any) -> bytes:
        return _dumps(content).encode("ascii")


def _error(status: int, message: str) -> JSON:
    return JSON({"error": message}, status_code=status)


def _limit(request: Request, default: int) -> int:
    """The request's `?limit=` (`default` if none); InvalidOptionError if it is not a whole
    number from 1 to MAX_LIMIT."""
    given = request.query_params.get("limit") or None
    if given is None:
        return default
    try:
        limit = int(given)
    except ValueError:
        raise InvalidOptionError(f"limit={given!r:.40} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidOptionError(f"limit={limit} is out of range: 1 to {MAX_LIMIT}")
    return limit


def _status(request: Request) -> str | None:
    """The request's `?status=` (None for all); InvalidOptionError if it is no status."""
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidOptionError(f"status={status!r:.40} is none of {', '.join(STATUSES)}")
    return status


class Endpoints:
    """The pages, the JSON API and the event streams of one dashboard."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.static = _static_files()
        self.reader = RunReader(settings.kv)

    # -- pages and their files -------------------------------------------------------------

    def page(self, name: str) -> Callable[[Request], Response]:
        """The endpoint serving the page `name`, the controls left out when read-only."""
        html = self.static[name].decode()
        if self.settings.read_only and CONTROLS[0] in html:
            start, end = html.index(CONTROLS[0]), html.index(CONTROLS[1]) + len(CONTROLS[1])
            html = html[:start] + html[end:]

        def endpoint(request: Request) -> Response:
            guard: Guard = request.scope["state"]["guard"]
            session, new = guard.session_of(dict(request.cookies))
            # The token is hex: it needs no escaping in the attribute it fills.
            response = Response(html.replace("{{csrf}}", guard.csrf_for(session)),
                                media_type="text/html; charset=utf-8")
            if new:
                response.raw_headers.append(guard.session_cookie_header(session))
            return response

        return endpoint

    def static_file(self, request: Request) -> Response:
        """One of the package's CSS or JavaScript files (a fixed set: no path reaches disk)."""
        name = request.path_params["name"]
        kind = STATIC_TYPES.get(name[name.rfind("."):]) if "." in name else None
        if kind is None or name not in self.static:
            return _error(404, f"no file {name!r:.80}")
        return Response(self.static[name], media_type=kind)

    # -- the JSON API ----------------------------------------------------------------------

    def info(self, request: Request) -> Response:
        """What this dashboard serves, and how."""
        return JSON({"store": self.settings.store, "read_only": self.settings.read_only,
                     "unsafe_pickle": self.settings.policy.unsafe_pickle,
                     "statuses": list(STATUSES)})

    def runs(self, request: Request) -> Response:
        """A page of the runs' summaries, newest first: `?limit=` of them (default RUNS_PAGE)
        after the place `?before=` names (a `next` or a row's `cursor`), of one `?status=` if
        given; with the cursor of the next page and the whole list's counts by status."""
        try:
            status, limit = _status(request), _limit(request, RUNS_PAGE)
            page = run_page(self.reader.all(), status=status, limit=limit,
                            before=request.query_params.get("before"))
        except InvalidOptionError as exc:
            return _error(400, str(exc))
        now = time.time()
        return JSON({"runs": [run_summary(r, now) for r in page.records], "next": page.next,
                     "total": page.total, "counts": page.counts})

    def run(self, request: Request) -> Response:
        """One run's whole record."""
        run_id = _run_id(request)
        try:
            record = self.reader.one(run_id)
        except DecodeError as exc:
            return _error(422, str(exc))
        if record is None:
            return _error(404, f"no run {show_key(run_id):.200} in this store")
        return JSON(run_detail(record))

    def act(self, request: Request) -> Response:
        """Leave a cancel, pause or resume request for a live run (the guard has checked the
        CSRF token)."""
        run_id, action = _run_id(request), request.path_params["action"]
        if action not in ACTIONS:
            return _error(404, f"no action {action!r:.40}: cancel, pause or resume")
        try:
            ACTIONS[action](self.settings.kv, run_id)
            record = self.reader.one(run_id)
        except RunError as exc:  # unknown run, or one that has ended
            return _error(404 if isinstance(exc, RunNotFoundError) else 409, str(exc))
        except DecodeError as exc:  # a record that cannot be read: no run to steer
            return _error(422, str(exc))
        body = run_detail(record) if record is not None else {}
        return JSON({**body, "requested": action})

    def cache(self, request: Request) -> Response:
        """Cache records by `?prefix=` and `?step=`, at most `?limit=`."""
        q = request.query_params
        try:
            limit = _limit(request, CACHE_LIMIT)
        except InvalidOptionError as exc:
            return _error(400, str(exc))
        return JSON(cache_rows(self.settings.kv, self.settings.policy,
                               prefix=q.get("prefix", ""), step=q.get("step") or None,
                               limit=limit))

    def stats(self, request: Request) -> Response:
        """Records and bytes by codec."""
        return JSON(store_stats(self.settings.kv))

    # -- the event streams -----------------------------------------------------------------

    async def _events(self, poll: Callable[[], tuple[str, Any] | None]) -> AsyncIterator[str]:
        """Server-sent events: `poll()` in a worker thread every interval; each (event, data)
        it returns is sent, None meaning nothing changed; a store that fails is reported as
        `event: store-error` and polled again. Ends when the server shuts down."""
        yield "retry: 1000\n\n"
        quiet = 0.0
        settings = self.settings
        while not settings.closing.is_set():
            try:
                found = await anyio.to_thread.run_sync(poll)
            except Exception as exc:  # the store failed (a lost connection), or reading what
                # it holds did: say so on the stream, which stays up, and poll again.
                found = "store-error", {"error": f"{type(exc).__name__}: {exc}"}
            if found is not None:
                yield f"event: {found[0]}\ndata: {_dumps(found[1])}\n\n"
                quiet = 0.0
            elif quiet >= KEEPALIVE:
                yield ": still here\n\n"
                quiet = 0.0
            await anyio.sleep(settings.poll)
            quiet += settings.poll

    def _stream(self, poll: Callable[[], tuple[str, Any] | None]) -> StreamingResponse:
        return StreamingResponse(self._events(poll), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    def runs_events(self, request: Request) -> Response:
        """The first page of the runs list (`?status=`, `?limit=` as /api/runs) and its
        changes (`event: runs`)."""
        try:
            status, limit = _status(request), _limit(request, RUNS_PAGE)
        except InvalidOptionError as exc:
            return _error(400, str(exc))
        # Pages polling within half an interval of each other share one read of the list.
        feed = RunListFeed(self.reader, status=status, limit=limit,
                           share_for=self.settings.poll / 2)

        def poll() -> tuple[str, Any] | None:
            change = feed.poll()
            return None if change is None else ("runs", change)

        return self._stream(poll)

    def run_events(self, request: Request) -> Response:
        """One run's record whenever it changes (`event: run`, `event: missing`, or
        `event: unreadable`)."""
        return self._stream(RunFeed(self.reader, _run_id(request)).poll)

    def routes(self) -> list[Route]:
        """Every route, the more specific first."""
        return [
            Route("/", self.page("runs.html")),
            Route("/cache", self.page("cache.html")),
            Route("/run/{run_id:path}", self.page("run.html")),
            Route("/static/{name}", self.static_file),
            Route("/api/info", self.info),
            Route("/api/runs", self.runs),
            Route("/api/events", self.runs_events),
            Route("/api/runs/{run_id:path}/events", self.run_events),
            Route("/api/runs/{run_id:path}/{action}", self.act, methods=["POST"]),
            Route("/api/runs/{run_id:path}", self.run),
            Route("/api/cache", self.cache),
            Route("/api/stats", self.stats),
        ]


def build_app(settings: Settings, *, port: int, host_names: frozenset[str] | None,
              token: str | None) -> Guard:
    """The app for `settings`, behind its guard (see doeff.dashboard.guard)."""
    app = Starlette(routes=Endpoints(settings).routes())
    return Guard(app, port=port, host_names=host_names, token=token,
                 read_only=settings.read_only)


__all__ = ["POLL", "Endpoints", "Settings", "build_app"]
