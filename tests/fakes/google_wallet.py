"""A fake Google Wallet: the OAuth2 token endpoint, walletobjects v1 loyalty classes and objects, and
the "Add to Google Wallet" save, over real HTTP.

A bare ASGI app under uvicorn in a background thread, on a free port (:class:`ThreadedServer`). The
token endpoint does what Google's does with a service account's JWT-bearer grant: it checks the RS256
assertion against the account's public key (picked by the ``kid`` header, as Google picks among the
account's keys), its audience, scope and lifetime, and hands out opaque access tokens. The REST API
accepts only those tokens, stores what it is given, merges a PATCH the way Google's patch semantics
say (nested objects merged, arrays replaced, ``null`` deletes) and answers errors in Google's shape
(``{"error": {"code", "message", "status"}}``). A test can make any class or object answer otherwise
(``replies``), slowly (``delay``) or with a ``Retry-After``.

:meth:`FakeGoogleWallet.save` is the shopper tapping "Add to Google Wallet": it verifies the JWT as
Google does (signature, ``aud`` "google", ``typ`` "savetowallet", the page's origin listed in
``origins``) and inserts the classes and objects it carries unless they already exist; an object given
by id only (``{"id", "classId"}``) must have been inserted through the REST API before, as Google asks.

The token endpoint is :class:`tests.fakes.google_oauth.FakeOAuth` for the wallet scope, the FCM fake's too.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import jwt

from tests.fakes.google_oauth import Answer, FakeOAuth, Reply
from tests.fakes.server import Receive, Scope, Send, ThreadedServer, answer, headers_of, read_body

WALLET_SCOPE = "https://www.googleapis.com/auth/wallet_object.issuer"
_RESOURCE = re.compile(r"^/walletobjects/v1/(loyaltyClass|loyaltyObject)(?:/([^/]+))?$")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
}
_REQUIRED = {
    "loyaltyClass": ("id", "issuerName", "programName", "programLogo", "reviewStatus"),
    "loyaltyObject": ("id", "classId", "state"),
}


class SaveRefused(Exception):
    """What the shopper would see instead of the pass: Google refused the save link."""


@dataclass(frozen=True)
class Request:
    method: str
    kind: str  # "loyaltyClass" or "loyaltyObject"
    resource_id: str
    body: dict[str, Any] | None
    headers: dict[str, str]
    status: int  # what the fake answered


class FakeGoogleWallet(ThreadedServer):
    def __init__(self, *, issuer_id: str = "3388000000012345678") -> None:
        super().__init__()
        self.issuer_id = issuer_id
        self.token_uri = f"{self.url}/token"
        self.oauth = FakeOAuth(self.token_uri, WALLET_SCOPE)
        self.classes: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.default = Reply()  # how every class and object answers unless ``replies`` says otherwise
        self.replies: dict[str, Reply] = {}  # class or object id -> how to answer calls about it
        self.requests: list[Request] = []  # every authenticated call to the REST API
        self.unauthenticated = 0  # REST calls refused for their bearer token
        self.saves: list[dict[str, Any]] = []  # the verified claims of every accepted save link
        self._lock = threading.Lock()  # the test thread (save) and the server thread share the store

    def trust(self, client_email: str, public_pem: str, key_id: str) -> None:
        self.oauth.trust(client_email, public_pem, key_id)

    def preload(self, loyalty_class: dict[str, Any], *objects: dict[str, Any]) -> None:
        """What an earlier process inserted through the API (no calls recorded)."""
        with self._lock:
            self.classes.setdefault(loyalty_class["id"], _stored("loyaltyClass", loyalty_class))
            for document in objects:
                self.objects.setdefault(document["id"], _stored("loyaltyObject", document))

    def calls(self, method: str, kind: str = "loyaltyObject") -> list[Request]:
        return [request for request in self.requests if (request.method, request.kind) == (method, kind)]

    def reset(self) -> None:
        self.oauth.reset()
        with self._lock:
            self.classes.clear()
            self.objects.clear()
        self.default = Reply()
        self.replies.clear()
        self.requests.clear()
        self.unauthenticated = 0
        self.saves.clear()

    # -- "Add to Google Wallet" -------------------------------------------------------------------

    def save(self, token: str, origin: str) -> list[str]:
        """Verify a save JWT as Google does and insert what it carries; the ids of the objects saved."""
        try:
            issuer, public_pem = self.oauth.public_key(token)
            claims = jwt.decode(
                token,
                public_pem,
                algorithms=["RS256"],
                audience="google",
                issuer=issuer,
                options={"require": ["iss", "aud", "typ", "iat", "payload"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            raise SaveRefused(f"the JWT does not verify: {type(exc).__name__} {exc}") from exc
        if claims["typ"] != "savetowallet":
            raise SaveRefused(f"typ is {claims['typ']!r}, not 'savetowallet'")
        if not isinstance(claims["iat"], int) or claims["iat"] > time.time() + 60:
            raise SaveRefused("iat must be a Unix time that has passed")
        if origin not in claims.get("origins", []):
            raise SaveRefused(f"{origin} is not among the JWT's origins: the button would not render")
        payload = claims["payload"]
        saved: list[str] = []
        with self._lock:
            for document in payload.get("loyaltyClasses", []):
                if (problem := self._problem("loyaltyClass", document)) is not None:
                    raise SaveRefused(problem[1])
                self.classes.setdefault(document["id"], _stored("loyaltyClass", document))
            for document in payload.get("loyaltyObjects", []):
                if set(document) <= {"id", "classId"}:  # a reference to an object inserted through the API
                    stored = self.objects.get(document.get("id", ""))
                    if stored is None or document.get("classId", stored["classId"]) != stored["classId"]:
                        raise SaveRefused(f"no object {document.get('id')!r} of class {document.get('classId')!r}")
                    stored["hasUsers"] = True
                    saved.append(document["id"])
                    continue
                if (problem := self._problem("loyaltyObject", document)) is not None:
                    raise SaveRefused(problem[1])
                # Google does not re-insert an object whose id exists: the saved pass keeps its data.
                stored = self.objects.setdefault(document["id"], _stored("loyaltyObject", document))
                stored["hasUsers"] = True
                saved.append(document["id"])
        self.saves.append(claims)
        return saved

    # -- the APIs -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = headers_of(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "POST" and path == "/token":
            status, document, extra = await self.oauth.grant(headers, body)
        elif match := _RESOURCE.match(path):
            kind, resource_id = match.group(1), match.group(2)
            status, document, extra = await self._rest(method, kind, resource_id, headers, body)
        else:
            status, document, extra = 404, _error(404, f"no such path {path}"), {}
        response_headers = {"content-type": "application/json; charset=UTF-8", **extra}
        await answer(send, status, json.dumps(document).encode(), response_headers)

    async def _rest(
        self, method: str, kind: str, resource_id: str | None, headers: dict[str, str], raw: bytes
    ) -> Answer:
        if not self.oauth.valid(headers):
            self.unauthenticated += 1
            return 401, _error(401, "Request had invalid authentication credentials."), {}
        body: dict[str, Any] | None = None
        if method in ("POST", "PATCH"):
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                return 400, _error(400, "the request body must be a JSON object"), {}
            body = parsed
        if resource_id is None:
            if method != "POST" or body is None:
                return 404, _error(404, "not found"), {}
            resource_id = str(body.get("id", ""))
        elif method not in ("GET", "PATCH"):
            return 404, _error(404, "not found"), {}
        resource_id = urllib.parse.unquote(resource_id)
        reply = self.replies.get(resource_id, self.default)
        if reply.arrived is not None:
            reply.arrived.set()
        if reply.release is not None:
            await asyncio.to_thread(reply.release.wait, 10)
        await asyncio.sleep(reply.delay)
        extra = {"retry-after": reply.retry_after} if reply.retry_after is not None else {}
        if reply.status != 200:
            status, document = reply.status, _error(reply.status, "refused by the fake")
        else:
            with self._lock:
                status, document = self._handle(method, kind, resource_id, body)
        self.requests.append(
            Request(method=method, kind=kind, resource_id=resource_id, body=body, headers=headers, status=status)
        )
        return status, document, extra

    def _handle(self, method: str, kind: str, resource_id: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        store = self.classes if kind == "loyaltyClass" else self.objects
        if method == "POST":
            assert body is not None
            return self._insert(kind, store, resource_id, body)
        if resource_id not in store:
            return 404, _error(404, "Requested entity was not found.")
        if method == "GET":
            return 200, store[resource_id]
        assert body is not None
        if body.get("id", resource_id) != resource_id:
            return 400, _error(400, f"the body's id {body.get('id')!r} is not {resource_id!r}")
        store[resource_id] = _merge(store[resource_id], body)
        return 200, store[resource_id]

    def _insert(
        self, kind: str, store: dict[str, dict[str, Any]], resource_id: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        if (problem := self._problem(kind, body)) is not None:
            return problem[0], _error(*problem)
        if resource_id in store:
            return 409, _error(409, f"Resource already exists: {resource_id}")
        store[resource_id] = _stored(kind, body)
        return 200, store[resource_id]

    def _problem(self, kind: str, document: dict[str, Any]) -> tuple[int, str] | None:
        """The status and message Google would refuse an inserted class or object with, if any."""
        missing = [field for field in _REQUIRED[kind] if not document.get(field)]
        if missing:
            return 400, f"{kind} lacks the required {', '.join(missing)}"
        if not str(document["id"]).startswith(f"{self.issuer_id}."):
            return 403, f"{document['id']} does not belong to issuer {self.issuer_id}"
        if kind == "loyaltyObject":
            parent = self.classes.get(document["classId"])
            if parent is None:
                return 400, f"the class {document['classId']} does not exist"
            if str(parent.get("reviewStatus", "")).upper() == "DRAFT":
                return 400, f"the class {document['classId']} is a draft"
        return None


def _stored(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    stored = copy.deepcopy(document)
    stored["kind"] = f"walletobjects#{kind}"
    if kind == "loyaltyClass" and str(stored.get("reviewStatus")).upper() in ("UNDER_REVIEW", "UNDERREVIEW"):
        stored["reviewStatus"] = "APPROVED"  # the platform approves a class submitted for review
    return stored


def _merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Google's patch semantics: objects merge field by field, arrays and scalars replace, null deletes."""
    merged = copy.deepcopy(current)
    for field, value in patch.items():
        if value is None:
            merged.pop(field, None)
        elif isinstance(value, dict) and isinstance(merged.get(field), dict):
            merged[field] = _merge(merged[field], value)
        else:
            merged[field] = copy.deepcopy(value)
    return merged


def _error(status: int, text: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": text, "status": _STATUS.get(status, "UNKNOWN")}}
