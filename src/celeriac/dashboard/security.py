"""Who may use the dashboard: HTTP basic auth or a bearer token, and a CSRF token on every
POST (a random cookie that each form repeats; SameSite=Strict keeps other sites from
sending it)."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError

CSRF_COOKIE = "celeriac_csrf"
CSRF_FIELD = "csrf_token"
TOKEN_ENV = "CELERIAC_DASHBOARD_TOKEN"
TOKEN_COOKIE = "celeriac_token"


@dataclass(frozen=True)
class Auth:
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def parse(cls, basic: str | None, token: str | None) -> Auth | None:
        """``--auth user:password`` and/or a bearer token; None when neither is set."""
        if basic is not None:
            user, sep, password = basic.partition(":")
            if not sep or not user or not password:
                raise ConfigurationError(
                    "--auth wants user:password (both non-empty), e.g. --auth admin:s3cret"
                )
            return cls(user, password, token or None)
        return cls(token=token) if token else None

    def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.token:
            return hmac.compare_digest(value.encode(), self.token.encode())
        if scheme.lower() == "basic" and self.user is not None and self.password is not None:
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            wanted = f"{self.user}:{self.password}".encode()
            return hmac.compare_digest(given, wanted)
        return False


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_address(address: str, auth: Auth | None) -> None:
    if not is_loopback(address) and auth is None:
        raise ConfigurationError(
            f"--address {address} is not a loopback address and no auth is set: anyone who "
            f"can reach it could revoke tasks and stop workers. Add --auth user:password or "
            f"set {TOKEN_ENV}, or keep the default --address 127.0.0.1"
        )


class Guard:
    """ASGI middleware: refuses requests without the credentials, and hands every request
    a CSRF token (``scope['state']['csrf']``), set as a cookie when it had none."""

    def __init__(self, app: ASGIApp, auth: Auth | None) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            cookie = SimpleCookie()
        if self.auth is not None:
            if scope["path"] == "/login" and self.auth.token:
                await _login(scope, send, self.auth.token)
                return
            held = cookie.get(TOKEN_COOKIE)
            by_cookie = held is not None and self.auth.allows(f"Bearer {held.value}")
            if not by_cookie and not self.auth.allows(headers.get("authorization", "")):
                await _unauthorized(send, basic=self.auth.user is not None)
                return
        morsel = cookie.get(CSRF_COOKIE)
        token = morsel.value if morsel is not None and len(morsel.value) >= 32 else None
        fresh = token is None
        token = token or secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                value = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"set-cookie", value.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _login(scope: Scope, send: Send, token: str) -> None:
    """``/login?token=…``: the bearer token as an HttpOnly cookie, for a browser (which
    cannot send an Authorization header by itself), then on to the cluster page."""
    given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        await _unauthorized(send, basic=False)
        return
    value = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    headers = [(b"location", b"/cluster"), (b"set-cookie", value.encode())]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _unauthorized(send: Send, basic: bool) -> None:
    body = b"authentication required: give the dashboard's user:password or bearer token\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if basic:
        headers.append((b"www-authenticate", b'Basic realm="celeriac dashboard"'))
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def checked_form(request: Request) -> dict[str, Any]:
    """The POSTed form, after its CSRF token matched the cookie's (403 otherwise)."""
    form = await request.form()
    given = str(form.get(CSRF_FIELD) or "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not given or not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
        raise HTTPException(
            403, "missing or wrong CSRF token: reload the page and submit the form again"
        )
    return {k: v for k, v in form.items() if isinstance(v, str)}
