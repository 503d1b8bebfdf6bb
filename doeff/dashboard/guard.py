"""The dashboard's safety rules, as one ASGI middleware in front of every request.

- **Host header**: a request must name the host the server was bound to (so a page on another
  site cannot reach a loopback dashboard through DNS rebinding); a wildcard bind (0.0.0.0, ::)
  cannot know its names and relies on the token, which it always has.
- **Token** (when set; required off loopback): `Authorization: Bearer T`, or the HttpOnly
  cookie that a first page load with `?token=T` sets (the page is then reloaded without the
  token, so it stays out of history and referrers). Otherwise 401.
- **CSRF**: a request that changes state (any method but GET/HEAD) must carry `X-CSRF-Token`,
  the HMAC of the browser's session cookie under a secret made at start-up; only a page of this
  server can read it (from its `<meta name="csrf-token">`). Otherwise 403; always 403 read-only.
- **Headers** on every response: a CSP allowing nothing but this server's own files (no inline
  script), no framing, no sniffing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_HEADER = "x-csrf-token"
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) can only be reached from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def host_names(host: str, port: int) -> frozenset[str] | None:
    """The Host header values a request may carry for a server bound to `host`:`port` (None: any,
    for a wildcard bind)."""
    if host in WILDCARDS:
        return None
    names = {"localhost", "127.0.0.1", "[::1]"} if is_loopback(host) else set()
    names.add(f"[{host}]" if ":" in host else host.lower())
    with_port = {f"{n}:{port}" for n in names}
    return frozenset(with_port | (names if port == 80 else set()))


class Guard:
    """The middleware: Host check, token, CSRF and read-only refusal, security headers."""

    def __init__(self, app: ASGIApp, *, port: int, host_names: frozenset[str] | None,
                 token: str | None, read_only: bool) -> None:
        self.app = app
        self.hosts = host_names
        self.token = token
        self.read_only = read_only
        self.secret = secrets.token_bytes(32)
        # Cookies are not kept apart by port: name them after it, so that two dashboards on
        # one host do not overwrite each other's.
        self.token_cookie = f"doeff_token_{port}"
        self.session_cookie = f"doeff_session_{port}"

    # -- sessions and their CSRF tokens ----------------------------------------------------

    def csrf_for(self, session: str) -> str:
        """The CSRF token of a session id."""
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    def session_of(self, cookies: dict[str, str]) -> tuple[str, bool]:
        """The request's session id, and whether it is new (then the page sets its cookie)."""
        session = cookies.get(self.session_cookie, "")
        if len(session) == 64 and all(c in "0123456789abcdef" for c in session):
            return session, False
        return secrets.token_hex(32), True

    def session_cookie_header(self, session: str) -> tuple[bytes, bytes]:
        """The Set-Cookie header giving the browser its session."""
        return (b"set-cookie",
                f"{self.session_cookie}={session}; Path=/; HttpOnly; SameSite=Strict".encode())

    # -- the middleware --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _respond(send, *refusal)
            return
        if self.token is not None:
            query = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                              keep_blank_values=True)
            given = [v for k, v in query if k == "token"]
            if given and scope["method"] in SAFE_METHODS and self._is_token(given[-1]):
                # Keep the token out of the address bar: set the cookie and load the page again.
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                # The path as sent (still percent-encoded): a run id may hold `?` or `#`.
                path = scope.get("raw_path") or scope["path"].encode("utf-8")
                # One leading slash: `//host/...` would send the browser to another host.
                path = b"/" + path.lstrip(b"/")
                location = path + (f"?{rest}".encode() if rest else b"")
                cookie = (f"{self.token_cookie}={given[-1]}; Path=/; HttpOnly; "
                          f"SameSite=Strict").encode()
                await _respond(send, 303, "signed in", [(b"location", location),
                                                        (b"set-cookie", cookie)])
                return
            if not self._authorized(headers):
                await _respond(send, 401, "this dashboard needs its token: open the address "
                               "`doeff dashboard` printed (with ?token=), or send "
                               "Authorization: Bearer TOKEN")
                return
        if scope["method"] not in SAFE_METHODS:
            if self.read_only:
                await _respond(send, 403, "the dashboard runs with --read-only: it changes "
                               "nothing")
                return
            session = _cookies(headers).get(self.session_cookie, "")
            # As bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 403).
            sent = headers.get(CSRF_HEADER, "").encode("latin-1")
            if not session or not hmac.compare_digest(sent, self.csrf_for(session).encode()):
                await _respond(send, 403, "missing or wrong X-CSRF-Token: reload the page and "
                               "try again")
                return
        scope.setdefault("state", {})["guard"] = self

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        if self.hosts is not None and headers.get("host", "").lower() not in self.hosts:
            return 421, "unexpected Host header: open the dashboard at the address it printed"
        origin = headers.get("origin")
        if (origin is not None and scope["method"] not in SAFE_METHODS
                and origin.partition("://")[2].lower() != headers.get("host", "").lower()):
            return 403, "cross-origin request refused"
        return None

    def _is_token(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   self.token.encode("utf-8", "surrogateescape"))

    def _authorized(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer " and self._is_token(bearer[7:].strip()):
            return True
        cookie = _cookies(headers).get(self.token_cookie)
        return cookie is not None and self._is_token(cookie)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (a repeated header keeps its last value)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no cookie, not a crash
        return {}
    return {k: m.value for k, m in jar.items()}


async def _respond(send: Send, status: int, message: str,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *(extra or []), *HEADERS]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["CSP", "Guard", "host_names", "is_loopback"]
