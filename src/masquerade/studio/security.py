"""Request checks and response headers for every request (plain ASGI, so streamed responses pass).

- Host: on a loopback bind only loopback host names are served (a web page cannot reach the studio
  through DNS rebinding).
- Origin: a request that says it comes from another origin is refused (CORS stays off).
- Token: with ``--token``, every ``/api`` call needs ``Authorization: Bearer TOKEN`` or the session
  cookie the page gets from ``POST /api/session`` (so ``<img>``, ``<video>`` and EventSource work).
- Headers: a restrictive Content-Security-Policy and friends on every response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from masquerade.studio.settings import StudioSettings, is_loopback

COOKIE = "masquerade_studio"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'; object-src 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def session_value(token: str) -> str:
    """The cookie's value: derived from the token, so the cookie never holds the token itself."""
    return hmac.new(token.encode(), b"masquerade studio session", hashlib.sha256).hexdigest()


class Guardrails:
    def __init__(self, app: Any, settings: StudioSettings) -> None:
        self.app, self.settings = app, settings
        self.any_host = not is_loopback(settings.host)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope["path"], headers)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        if refusal is not None:
            status, detail = refusal
            body = json.dumps({"detail": detail}).encode()
            extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
            await send_with_headers({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *extra]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, path: str, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if not self.any_host and not is_loopback(_host_name(host)):
            return 403, f"the studio answers on loopback addresses only, not {host[:80]!r}"
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return 403, "cross-origin requests are refused"
        token = self.settings.token
        if token and path.startswith("/api/") and not self._authorised(headers, token):
            return 401, "this studio needs its token: send Authorization: Bearer TOKEN"
        return None

    @staticmethod
    def _authorised(headers: Headers, token: str) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value.encode(), session_value(token).encode()):
                return True
        return False


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
