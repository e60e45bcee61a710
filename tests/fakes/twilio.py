"""A fake Twilio Messages API over real HTTP, and signed status callbacks for webhook tests.

A bare ASGI app under uvicorn on a background thread and a free port. It checks what Twilio checks
(HTTP Basic credentials of its one account, the account in the path, form fields, an E.164 ``To``),
records accepted messages and answers like Twilio: 201 with a ``sid``, or a JSON error with Twilio's
code. A repeated ``I-Twilio-Idempotency-Token`` gets the first answer's ``sid`` and is not recorded
again (what we would like Twilio to do; see notifications/providers/twilio.py).

``mode`` decides how every request goes: ``ok``; ``invalid`` (400 21211), ``rate-limited`` (429 20429
with Retry-After), ``error`` (503), ``slow`` (answers after ``delay`` seconds); with ``fail_times`` set,
the mode applies that many times and then the fake recovers. ``numbers`` sets a mode for one recipient
(also ``unsubscribed``: 400 21610), so one batch can mix outcomes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import urllib.parse
from typing import Any

import msgspec

from tests.fakes.server import Receive, Scope, Send, ThreadedServer, answer, headers_of, read_body

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
RETRY_AFTER = "7"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
#: mode -> (HTTP status, Twilio error code, message)
_MODE_ERRORS: dict[str, tuple[int, int, str]] = {
    "rate-limited": (429, 20429, "Too Many Requests"),
    "error": (503, 20500, "Service Unavailable"),
    "unsubscribed": (400, 21610, "Attempt to send to unsubscribed recipient"),
}


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    token: str | None


def sign(url: str, params: dict[str, str], auth_token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it, written out independently of the code under test."""
    signed = url
    for key in sorted(params):
        signed += f"{key}{params[key]}"
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class FakeTwilio(ThreadedServer):
    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.mode = "ok"
        self.fail_times: int | None = None  # None: the mode applies to every request
        self.delay = 1.0
        self.numbers: dict[str, str] = {}
        self.sent: list[Sent] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._by_token: dict[str, Sent] = {}

    # -- Twilio -----------------------------------------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        if not value.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    def _mode_for(self, to: str) -> str:
        if to in self.numbers:
            return self.numbers[to]
        if self.fail_times is None:
            return self.mode
        if self.fail_times > 0:
            self.fail_times -= 1
            return self.mode
        return "ok"

    def _refusal(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """What Twilio refuses whatever the mode: bad credentials, missing fields."""
        if not self._authorized(headers):
            return 401, _error(20003, "Authentication Error - invalid username", 401)
        if not form.get("To"):
            return 400, _error(21604, "A 'To' phone number is required.", 400)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return 400, _error(21603, "A 'From' phone number is required.", 400)
        if not form.get("Body"):
            return 400, _error(21602, "Message body is required.", 400)
        return None

    async def _messages(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        refusal = self._refusal(headers, form)
        if refusal is not None:
            return refusal
        to, token = form["To"], headers.get("i-twilio-idempotency-token")
        mode = self._mode_for(to)
        if mode == "slow":
            await asyncio.sleep(self.delay)
        if mode in _MODE_ERRORS:
            status, code, text = _MODE_ERRORS[mode]
            return status, _error(code, text, status)
        if mode == "invalid" or not _E164.match(to):
            return 400, _error(21211, f"Invalid 'To' Phone Number: {to}", 400)
        if token and token in self._by_token:
            return 201, self._resource(self._by_token[token])
        message = Sent(
            sid="SM" + secrets.token_hex(16),
            to=to,
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form["Body"],
            status_callback=form.get("StatusCallback"),
            token=token,
        )
        self.sent.append(message)
        if token:
            self._by_token[token] = message
        return 201, self._resource(message)

    def _resource(self, m: Sent) -> dict[str, Any]:
        return {
            "sid": m.sid,
            "account_sid": self.account_sid,
            "to": m.to,
            "from": m.from_,
            "messaging_service_sid": m.messaging_service_sid,
            "body": m.body,
            "status": "queued" if m.from_ else "accepted",
            "num_segments": "1",
            "error_code": None,
            "error_message": None,
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m.sid}.json",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = headers_of(scope)
        self.requests += 1
        self.headers.append(headers)
        expected = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        response_headers = {"content-type": "application/json"}
        if scope["method"] != "POST" or not scope["path"].startswith("/2010-04-01/Accounts/"):
            status, document = 404, _error(20404, "The requested resource was not found", 404)
        elif not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            status, document = 400, _error(20001, "form-encoded body expected", 400)
        elif scope["path"] != expected and self._authorized(headers):
            status, document = 404, _error(20404, "The requested resource was not found", 404)
        else:
            form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
            status, document = await self._messages(headers, form)
        if status == 429:
            response_headers["retry-after"] = RETRY_AFTER
        if status == 401:
            response_headers["www-authenticate"] = 'Basic realm="Twilio API"'
        await answer(send, status, json.dumps(document).encode(), response_headers)

    # -- status callbacks ---------------------------------------------------------------------------

    def callback(self, message: Sent, status: str, *, error_code: str | None = None) -> tuple[str, dict[str, str], str]:
        """What Twilio would POST to the message's StatusCallback: (url, form fields, X-Twilio-Signature)."""
        if message.status_callback is None:
            raise ValueError("the message was sent without a StatusCallback")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message.from_ or "",
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        return message.status_callback, params, sign(message.status_callback, params, self.auth_token)


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
