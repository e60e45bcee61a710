"""A fake Infobip speaking its SMS (``/sms/2/text/advanced``) and Viber (``/viber/2/messages``) APIs over
real HTTP, fast enough for the dispatch benchmark.

It checks ``Authorization: App <key>``, records every accepted message once per ``messageId`` (a
message sent again with the same id is counted in ``duplicates`` and not delivered twice, as a
provider that honours client message ids would do) and answers in Infobip's shape. ``mode`` decides
how it behaves: ``ok``; ``error`` answers 503 ``fail_times`` times; ``throttle`` answers 429 with
``Retry-After``; ``slow`` answers after ``delay`` seconds; ``reject`` marks recipients in ``rejected``
as REJECTED. Run standalone (for benchmarks and the kill test) with
``python -m tests.fakes.infobip --port N``; ``GET /_stats`` reports the counts.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import Any

import msgspec
import uvicorn

from tests.fakes.server import Receive, Scope, Send, ThreadedServer, answer, headers_of, read_body

API_KEY = "fake-infobip-key"

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class FakeInfobip(ThreadedServer):
    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.mode = "ok"
        self.fail_times = 0
        self.retry_after = 1
        self.delay = 2.0
        self.rejected: set[str] = set()
        self.messages: dict[str, dict[str, Any]] = {}  # messageId -> what was sent
        self.duplicates = 0
        self.requests = 0
        self.per_recipient: Counter[str] = Counter()
        # Bumped by reset(): a slow request of an earlier test that completes after it is not recorded
        # (outbox ids restart per test, so its messageId could pass for a later test's message).
        self.generation = 0

    def _failing(self) -> bool:
        """Whether ``error`` mode fails this request (it fails the next ``fail_times`` ones)."""
        if self.mode == "error" and self.fail_times > 0:
            self.fail_times -= 1
            return True
        return False

    def reset(self) -> None:
        self.generation += 1
        self.mode = "ok"
        self.fail_times = 0
        self.rejected = set()
        self.messages.clear()
        self.per_recipient.clear()
        self.duplicates = 0
        self.requests = 0

    # -- the API --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        status, payload, headers = await self.handle(scope, body)
        await answer(send, status, _encoder.encode(payload), {"content-type": "application/json", **headers})

    async def handle(self, scope: Scope, body: bytes) -> tuple[int, Any, dict[str, str]]:
        path = scope["path"]
        if scope["method"] == "GET" and path == "/_stats":
            return 200, self.stats(), {}
        if headers_of(scope).get("authorization") != f"App {API_KEY}":
            return 401, {"requestError": {"serviceException": {"messageId": "UNAUTHORIZED"}}}, {}
        if path not in ("/sms/2/text/advanced", "/viber/2/messages"):
            return 404, {"requestError": {"serviceException": {"messageId": "NOT_FOUND"}}}, {}
        self.requests += 1
        generation = self.generation
        if self.mode == "slow":
            await asyncio.sleep(self.delay)
        if generation != self.generation or self._failing():  # (a stale request: the test that sent it is over)
            return 503, {"requestError": {"serviceException": {"messageId": "SERVICE_UNAVAILABLE"}}}, {}
        if self.mode == "throttle":
            return (
                429,
                {"requestError": {"serviceException": {"messageId": "TOO_MANY_REQUESTS"}}},
                {"retry-after": str(self.retry_after)},
            )
        request = _decoder.decode(body)
        channel = "sms" if path.startswith("/sms") else "viber"
        answers = []
        for message in request["messages"]:
            for destination in message["destinations"]:
                to, mid = destination["to"], destination["messageId"]
                if to in self.rejected:
                    status = {"groupId": 5, "groupName": "REJECTED", "id": 6, "name": "REJECTED_DESTINATION"}
                else:
                    status = {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"}
                    if mid in self.messages:
                        self.duplicates += 1
                    else:
                        text = message["text"] if channel == "sms" else message["content"]["text"]
                        self.messages[mid] = {"channel": channel, "to": to, "text": text, "message": message}
                        self.per_recipient[to] += 1
                answers.append({"to": to, "messageId": mid, "status": status})
        return 200, {"bulkId": f"bulk-{self.requests}", "messages": answers}, {}

    def stats(self) -> dict[str, Any]:
        return {"delivered": len(self.messages), "duplicates": self.duplicates, "requests": self.requests}


def report(message_id: str, group: str, *, error: str | None = None) -> dict[str, Any]:
    """One entry of a delivery report body as Infobip posts it."""
    groups = {"PENDING": 1, "UNDELIVERABLE": 2, "DELIVERED": 3, "EXPIRED": 4, "REJECTED": 5}
    entry: dict[str, Any] = {
        "bulkId": "bulk",
        "messageId": message_id,
        "to": "375291234567",
        "sentAt": "2026-03-02T09:00:00.000+0000",
        "doneAt": "2026-03-02T09:00:05.000+0000",
        "status": {"groupId": groups[group], "groupName": group, "id": 5, "name": f"{group}_X"},
    }
    if error:
        entry["error"] = {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": error, "permanent": True}
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(FakeInfobip(args.port), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
