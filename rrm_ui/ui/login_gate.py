"""The login gate: what Gradio's own login leaves open, closed (on when accounts exist).

See :class:`LoginGate` and docs/app.md ("Access control"). tests/test_access.py walks every
route of the app without a login and checks that each is refused or leaks nothing.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse


class LoginGate:
    """ASGI middleware, on when accounts exist: closes what Gradio's own login leaves open.

    Gradio 6 checks the login on its page, config, info, file and call routes, but not on all
    (``/openapi.json``, ``/gradio_api/heartbeat/<session>``, ``/cancel``, ``/app_id``, the run
    history page, ...), and its login page embeds the full list of API endpoints (as does the run
    history page). So, without a valid login cookie:
    only the login page (with that list removed), ``POST /login``, ``/logout``, Gradio's own
    static files (``/assets``, ``/static``, the theme, icons) and ``/gradio_api/startup-events``
    (``launch()`` calls it without a cookie; it answers true or false and starts the queue once)
    answer; everything else is 401.
    With a login, a Gradio session hash (which holds the session's ``gr.State`` and its event
    stream) belongs to the user who used it first: another user sending it gets 403.
    """

    OPEN = frozenset({"/login", "/login/", "/logout", "/theme.css", "/gradio_api/theme.css", "/favicon.ico",
                      "/robots.txt", "/gradio_api/startup-events"})  # fmt: skip
    OPEN_PREFIXES = ("/assets/", "/static/")
    SESSION_IN_PATH = ("/gradio_api/heartbeat/", "/gradio_api/stream/")  # GET /gradio_api/<x>/<session_hash>/...
    SESSION_IN_BODY = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/api/", "/gradio_api/call/",
                       "/gradio_api/cancel", "/gradio_api/reset", "/gradio_api/stream/")  # POST, JSON body  # fmt: skip
    API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.S)  # its JSON escapes "<"
    MAX_SESSIONS = 100_000

    def __init__(self, app: Any) -> None:
        self.app = app
        self.owners: OrderedDict[str, str] = OrderedDict()  # session hash -> user name

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request = HTTPConnection(scope)
        path, gradio_app = scope["path"], scope["app"]  # the Gradio App: its login tokens and cookie name
        cookies, cid = request.cookies, gradio_app.cookie_id
        token = cookies.get(f"access-token-{cid}") or cookies.get(f"access-token-unsecure-{cid}")
        user = gradio_app.tokens.get(token)
        if user is None:
            if path == "/" and scope["type"] == "http":
                return await self._login_page(scope, receive, send)
            if path in self.OPEN or path.startswith(self.OPEN_PREFIXES):
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
        if session and self.owners.setdefault(session, user) != user:
            return await self._refuse(scope, receive, send, 403, "this session belongs to another user")
        if len(self.owners) > self.MAX_SESSIONS:
            self.owners.popitem(last=False)
        return await self.app(scope, receive, send)

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


async def _read_body(receive: Any) -> tuple[bytes, Any]:
    """The whole request body, and a ``receive`` that hands it on to the app again."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


__all__ = ["LoginGate"]
