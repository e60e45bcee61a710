"""A fake Google: the OAuth2 token endpoint and FCM HTTP v1 ``messages:send``, over real HTTP.

A bare ASGI app under uvicorn in a background thread, on a free port. The token endpoint does what
Google's does with a service account's JWT-bearer grant: it checks the RS256 assertion against the
account's public key, its audience, scope and lifetime, and hands out short opaque access tokens.
``messages:send`` accepts only those tokens (``revoke_tokens`` forgets them, as Google does when a
token expires early) and answers each device token the way the test says (``replies``, ``default``),
with Google's error shape. Everything it was sent is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
import uvicorn

from tests.fakes.server import ThreadedServer, free_port

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SEND = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Reply:
    """How to answer: a status, Google's error ``status`` and FCM ``errorCode``, a delay, a Retry-After."""

    status: int = 200
    error_code: str | None = None  # FcmError.errorCode: UNREGISTERED, QUOTA_EXCEEDED, ...
    delay: float = 0.0
    retry_after: str | None = None


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    message: dict[str, Any]
    status: int  # what the fake answered

    @property
    def token(self) -> str:
        return str(self.message.get("token", ""))


class FakeFcm(ThreadedServer):
    def __init__(self, *, project_id: str = "kartka-test") -> None:
        self.project_id = project_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_uri = f"{self.url}/token"
        self.accounts: dict[str, str] = {}  # client_email -> the PEM public key its assertions verify with
        self.expires_in = 3600  # what the token endpoint says of the tokens it issues
        self.token_reply = Reply()  # the token endpoint's behaviour once the assertion checks out
        self.grants: list[dict[str, Any]] = []  # verified assertion claims, one per token issued
        self.token_errors: list[str] = []  # why assertions were refused
        self.default = Reply()
        self.replies: dict[str, Reply] = {}  # device token -> how to answer it
        self.requests: list[Request] = []  # every authenticated, well-formed messages:send
        self.unauthenticated = 0  # messages:send refused for their bearer token
        self.accept_tokens = True  # False: refuse every access token, even fresh ones (revoked account)
        self._tokens: set[str] = set()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def trust(self, client_email: str, public_pem: str) -> None:
        self.accounts[client_email] = public_pem

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far: the next send with one gets a 401."""
        self._tokens.clear()

    @property
    def received(self) -> list[Request]:
        return [request for request in self.requests if request.status == 200]

    def reset(self) -> None:
        self.expires_in = 3600
        self.token_reply = Reply()
        self.grants.clear()
        self.token_errors.clear()
        self.default = Reply()
        self.replies.clear()
        self.requests.clear()
        self.unauthenticated = 0
        self.accept_tokens = True
        self._tokens.clear()

    # -- the APIs -------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            event = await receive()
            body.extend(event.get("body", b""))
            if not event.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        path: str = scope["path"]
        if scope["method"] == "POST" and path == "/token":
            status, answer, extra = await self._token(headers, bytes(body))
        elif scope["method"] == "POST" and (match := _SEND.match(path)):
            status, answer, extra = await self._send(match.group(1), headers, bytes(body))
        else:
            status, answer, extra = 404, _google_error(404, "not found"), {}
        payload = json.dumps(answer).encode()
        response_headers = [(b"content-type", b"application/json; charset=UTF-8")]
        response_headers += [(name.encode(), value.encode()) for name, value in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": payload})

    async def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return self._refuse_grant("invalid_request", "the token request must be a form")
        if form.get("grant_type") != JWT_BEARER:
            return self._refuse_grant("unsupported_grant_type", f"grant_type {form.get('grant_type')!r}")
        assertion = form.get("assertion", "")
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
            claims = jwt.decode(
                assertion,
                self.accounts[issuer],
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=issuer,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            return self._refuse_grant("invalid_grant", f"Invalid JWT: {type(exc).__name__} {exc}")
        if SCOPE not in str(claims["scope"]).split() or claims["exp"] - claims["iat"] > 3600:
            return self._refuse_grant("invalid_scope", "wrong scope or an assertion living over an hour")
        reply = self.token_reply
        await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return reply.status, {"error": "internal_failure"}, {}
        self.grants.append(claims)
        token = f"ya29.fake-{secrets.token_urlsafe(16)}"
        self._tokens.add(token)
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}, {}

    def _refuse_grant(self, error: str, description: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.token_errors.append(f"{error}: {description}")
        return 400, {"error": error, "error_description": description}, {}

    async def _send(
        self, project_id: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens or not self.accept_tokens:
            self.unauthenticated += 1
            return 401, _google_error(401, "Request had invalid authentication credentials."), {}
        if project_id != self.project_id:
            return 403, _google_error(403, f"Permission denied on project {project_id}."), {}
        try:
            message = json.loads(body)["message"]
        except (ValueError, KeyError, TypeError):
            message = None
        if (problem := _message_problem(message)) is not None:
            self.requests.append(Request(headers=headers, message=message or {}, status=400))
            return 400, _google_error(400, problem, "INVALID_ARGUMENT"), {}
        reply = self.replies.get(message["token"], self.default)
        self.requests.append(Request(headers=headers, message=message, status=reply.status))
        await asyncio.sleep(reply.delay)
        extra = {"retry-after": reply.retry_after} if reply.retry_after is not None else {}
        if reply.status == 200:
            return 200, {"name": f"projects/{project_id}/messages/0:{secrets.token_hex(8)}"}, extra
        return reply.status, _google_error(reply.status, "refused by the fake", reply.error_code), extra

    # -- the server -----------------------------------------------------------------------------


def _message_problem(message: object) -> str | None:
    """What FCM would refuse in a v1 ``message`` with INVALID_ARGUMENT, if anything."""
    if not isinstance(message, dict) or not isinstance(message.get("token"), str) or not message["token"]:
        return "message.token is required"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(value, str) for value in data.values()):
        return "message.data values must be strings"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or set(notification) - {"title", "body", "image"}:
        return "message.notification has unknown fields"
    return None


def _google_error(status: int, text: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": text, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}
    if error_code is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    return {"error": error}
