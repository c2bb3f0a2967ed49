"""The login gate: what Gradio's own login leaves open, closed (on when accounts exist).

See :class:`LoginGate` and docs/app.md ("Access control"). tests/test_access.py walks every
route of the app without a login and checks that each is refused or leaks nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from rrm_ui.services.metrics import token_matches

if TYPE_CHECKING:
    from rrm_ui.services.accounts import LoginThrottle


class LoginGate:
    """ASGI middleware, on when accounts exist: closes what Gradio's own login leaves open.

    Gradio 6 checks the login on its page, config, info, file and call routes, but not on all
    (``/openapi.json``, ``/gradio_api/heartbeat/<session>``, ``/cancel``, ``/app_id``, the run
    history page, ...), and its login page embeds the full list of API endpoints (as does the run
    history page). So, without a valid login cookie:
    only the login page (with that list removed), ``POST /login``, ``/logout``, Gradio's own
    static files (``/assets``, ``/static``, the theme, icons) and ``/gradio_api/startup-events``
    (``launch()`` calls it without a cookie; it answers true or false and starts the queue once)
    answer, and ``GET /metrics`` to a scraper that sends the configured ``metrics_token`` as
    ``Authorization: Bearer TOKEN``; everything else is 401.
    With a login, a Gradio session hash (which holds the session's ``gr.State`` and its event
    stream) belongs to the user who used it first: another user sending it gets 403. With
    ``session_owner`` (the app passes the database's ``login_sessions``), the first use is decided
    for every app process on the database, so a session hash learnt from one process is refused
    by the others too; each process caches the owners it has seen (an owner never changes).

    Sessions end when the account's password changes or it is removed: each login cookie is
    remembered with the account's session epoch at login (``session_epoch``, read from the
    database), and a cookie whose account has another epoch now (or no login) is dropped at its
    next request, in every app process, without a restart. Failed logins are throttled per name
    and per address (``throttle``, :class:`~rrm_ui.services.accounts.LoginThrottle`): while locked,
    ``POST /login`` answers 429 with a message and ``Retry-After``, before any password is checked.
    """

    OPEN = frozenset({"/login", "/login/", "/logout", "/theme.css", "/gradio_api/theme.css", "/favicon.ico",
                      "/robots.txt", "/gradio_api/startup-events"})  # fmt: skip
    OPEN_PREFIXES = ("/assets/", "/static/")
    SESSION_IN_PATH = ("/gradio_api/heartbeat/", "/gradio_api/stream/")  # GET /gradio_api/<x>/<session_hash>/...
    SESSION_IN_BODY = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/api/", "/gradio_api/call/",
                       "/gradio_api/cancel", "/gradio_api/reset", "/gradio_api/stream/")  # POST, JSON body  # fmt: skip
    API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)  # its JSON escapes "<"
    MAX_SESSIONS = 100_000
    LOGIN = frozenset({"/login", "/login/"})
    MAX_LOGIN_BODY = 64 * 1024
    METRICS = "/metrics"  # the operators' metrics (rrm_ui/services/metrics.py)

    def __init__(
        self,
        app: Any,
        *,
        session_epoch: Callable[[str], int | None] | None = None,
        throttle: LoginThrottle | None = None,
        metrics_token: str | None = None,
        session_owner: Callable[[str, str], str] | None = None,
    ) -> None:
        self.app = app
        self.session_owner = session_owner
        self.metrics_token = metrics_token
        self.owners: OrderedDict[str, str] = OrderedDict()  # session hash -> user name
        self.session_epoch = session_epoch
        self.throttle = throttle
        self.epochs: OrderedDict[str, int] = OrderedDict()  # login token -> the account's epoch at login

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request = HTTPConnection(scope)
        path, gradio_app = scope["path"], scope["app"]  # the Gradio App: its login tokens and cookie name
        cookies, cid = request.cookies, gradio_app.cookie_id
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        if path in self.LOGIN and scope["type"] == "http" and scope.get("method") == "POST":
            return await self._login(scope, receive, send, cid)
        user = gradio_app.tokens.get(token)
        if user is not None and not await self._still_valid(token, user, gradio_app):
            user = None
        if user is None:
            if path == "/" and scope["type"] == "http":
                return await self._login_page(scope, receive, send)
            if path in self.OPEN or path.startswith(self.OPEN_PREFIXES):
                return await self.app(scope, receive, send)
            if path == self.METRICS and token_matches(request.headers.get("authorization"), self.metrics_token):
                return await self.app(scope, receive, send)
            return await self._refuse(scope, receive, send, 401, "Not authenticated")
        session: str | None = request.query_params.get("session_hash")
        method = scope.get("method")
        if method == "GET" and path.startswith(self.SESSION_IN_PATH):
            session = path.split("/")[3] or None
        elif method == "POST" and path.startswith(self.SESSION_IN_BODY):
            body, receive = await _read_body(receive)
            try:
                found = json.loads(body).get("session_hash")
            except (ValueError, AttributeError):
                found = None
            session = found if isinstance(found, str) else session
        if session and await self._owner(session, user) != user:
            return await self._refuse(scope, receive, send, 403, "this session belongs to another user")
        return await self.app(scope, receive, send)

    async def _owner(self, session: str, user: str) -> str:
        """The user the session belongs to (``user`` when it is new): this process's cache, else the
        shared ``session_owner`` (a database claim), else ``user`` first come."""
        owner = self.owners.get(session)
        if owner is None:
            owner = user if self.session_owner is None else await asyncio.to_thread(self.session_owner, session, user)
            self.owners[session] = owner
            if len(self.owners) > self.MAX_SESSIONS:
                self.owners.popitem(last=False)
        return owner

    async def _still_valid(self, token: str, user: str, gradio_app: Any) -> bool:
        """Whether the login ``token`` began under the account's current session epoch; if not, it
        is dropped (a password change or a removal since)."""
        if self.session_epoch is None:
            return True
        began = self.epochs.get(token)
        now = await asyncio.to_thread(self.session_epoch, user)
        if began is not None and now is not None and began == now:
            return True
        gradio_app.tokens.pop(token, None)
        self.epochs.pop(token, None)
        return False

    async def _login(self, scope: dict, receive: Any, send: Any, cid: str) -> None:
        """``POST /login``: throttled; a successful login's token is remembered with its epoch."""
        body = await _read_body_upto(receive, self.MAX_LOGIN_BODY)
        if body is None:
            return await self._refuse(scope, receive, send, 413, "a login form is small; this one is too big")

        async def once() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(scope, once).form()
            name = str(form.get("username") or "").strip()
        except Exception:  # noqa: BLE001 - a malformed form: Gradio answers it (422)
            name = ""
        address = (scope.get("client") or ("",))[0]
        if self.throttle is not None and (wait := self.throttle.wait_s(name, address)) > 0:
            seconds = math.ceil(wait)
            response = JSONResponse(
                {"detail": f"too many failed logins for this name or from this address; try again in {seconds} s"},
                status_code=429, headers={"Retry-After": str(seconds)},
            )  # fmt: skip
            return await response(scope, once, send)
        epoch = await asyncio.to_thread(self.session_epoch, name) if self.session_epoch and name else None
        seen: dict[str, Any] = {}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"set-cookie":
                        cookie, _, token = value.decode("latin-1").split(";", 1)[0].partition("=")
                        if cookie.strip() in (f"access-token-{cid}", f"access-token-unsecure-{cid}"):
                            seen["token"] = token.strip()
            await send(message)

        await self.app(scope, _replaying(body, receive), watch)
        if seen.get("status") == 200 and seen.get("token"):
            self.epochs[seen["token"]] = epoch if epoch is not None else -1  # -1: no epoch known, refused
            if len(self.epochs) > self.MAX_SESSIONS:
                self.epochs.popitem(last=False)
            if self.throttle is not None:
                self.throttle.succeeded(name, address)
        elif seen.get("status") == 400 and self.throttle is not None:  # Gradio: "Incorrect credentials."
            self.throttle.failed(name, address)

    async def _login_page(self, scope: dict, receive: Any, send: Any) -> None:
        """Gradio's login page without the endpoint list it would embed."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def keep(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = self.API_INFO.sub(b"window.gradio_api_info = null;</script>", b"".join(chunks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if scope["method"] != "HEAD":
                headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, keep)

    @staticmethod
    async def _refuse(scope: dict, receive: Any, send: Any, status: int, detail: str) -> None:
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        return await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


async def _read_body_upto(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None when it is longer than ``limit`` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _read_body(receive: Any) -> tuple[bytes, Any]:
    """The whole request body, and a ``receive`` that hands it on to the app again."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _replaying(body, receive)


def _replaying(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands the app ``body`` (already read) as the whole request, then whatever
    ``receive`` brings next (a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


__all__ = ["LoginGate"]
