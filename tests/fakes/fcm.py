"""A fake Google: the OAuth2 token endpoint and FCM HTTP v1 ``messages:send``, over real HTTP.

A bare ASGI app under uvicorn in a background thread, on a free port. The token endpoint does what
Google's does with a service account's JWT-bearer grant: it checks the RS256 assertion against the
account's public key, its audience, scope and lifetime, and hands out short opaque access tokens.
``messages:send`` accepts only those tokens (``revoke_tokens`` forgets them, as Google does when a
token expires early) and answers each device token the way the test says (``replies``, ``default``),
with Google's error shape. Everything it was sent is recorded. The token endpoint is
:class:`tests.fakes.google_oauth.FakeOAuth`, the Google Wallet fake's too.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from tests.fakes.google_oauth import Answer, FakeOAuth, Reply
from tests.fakes.server import Receive, Scope, Send, ThreadedServer, answer, headers_of, read_body

__all__ = ["SCOPE", "FakeFcm", "Reply", "Request"]  # Reply too: the FCM tests import it from here

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
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
        super().__init__()
        self.project_id = project_id
        self.token_uri = f"{self.url}/token"
        self.oauth = FakeOAuth(self.token_uri, SCOPE)
        self.default = Reply()
        self.replies: dict[str, Reply] = {}  # device token -> how to answer it
        self.requests: list[Request] = []  # every authenticated, well-formed messages:send
        self.unauthenticated = 0  # messages:send refused for their bearer token

    def trust(self, client_email: str, public_pem: str) -> None:
        """Let the account's assertions verify with this key, whatever key id they name."""
        self.oauth.trust(client_email, public_pem)

    def revoke_tokens(self) -> None:
        """Forget every access token issued so far: the next send with one gets a 401."""
        self.oauth.revoke_tokens()

    # The token endpoint's state, here as well as on ``oauth`` because the FCM tests reach for it here.

    @property
    def grants(self) -> list[dict[str, Any]]:
        """Verified assertion claims, one per token issued."""
        return self.oauth.grants

    @property
    def token_errors(self) -> list[str]:
        """Why assertions were refused."""
        return self.oauth.token_errors

    @property
    def expires_in(self) -> int:
        """What the token endpoint says of the tokens it issues."""
        return self.oauth.expires_in

    @expires_in.setter
    def expires_in(self, value: int) -> None:
        self.oauth.expires_in = value

    @property
    def token_reply(self) -> Reply:
        """The token endpoint's behaviour once the assertion checks out."""
        return self.oauth.token_reply

    @token_reply.setter
    def token_reply(self, value: Reply) -> None:
        self.oauth.token_reply = value

    @property
    def accept_tokens(self) -> bool:
        """False: refuse every access token, even fresh ones (revoked account)."""
        return self.oauth.accept_tokens

    @accept_tokens.setter
    def accept_tokens(self, value: bool) -> None:
        self.oauth.accept_tokens = value

    @property
    def received(self) -> list[Request]:
        return [request for request in self.requests if request.status == 200]

    def reset(self) -> None:
        self.oauth.reset()
        self.default = Reply()
        self.replies.clear()
        self.requests.clear()
        self.unauthenticated = 0

    # -- the APIs -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = headers_of(scope)
        path: str = scope["path"]
        if scope["method"] == "POST" and path == "/token":
            status, document, extra = await self.oauth.grant(headers, body)
        elif scope["method"] == "POST" and (match := _SEND.match(path)):
            status, document, extra = await self._send(match.group(1), headers, body)
        else:
            status, document, extra = 404, _google_error(404, "not found"), {}
        response_headers = {"content-type": "application/json; charset=UTF-8", **extra}
        await answer(send, status, json.dumps(document).encode(), response_headers)

    async def _send(self, project_id: str, headers: dict[str, str], body: bytes) -> Answer:
        if not self.oauth.valid(headers):
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
