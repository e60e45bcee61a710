"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

from kartka.db import Pool
from kartka.keys import Scope, create_key


class Keys:
    """Creates keys straight in the database and returns ready-made Authorization headers."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def headers(self, scope: Scope, *, store: str = "store-1", terminal: str = "till-1") -> dict[str, str]:
        async with self.pool.acquire() as conn:
            key, _ = await create_key(
                conn,
                scope=scope,
                store=store if scope is Scope.POS else None,
                terminal=terminal if scope is Scope.POS else None,
            )
        return {"Authorization": f"Bearer {key}"}


def problem(response: Any) -> dict[str, Any]:
    """Assert that a response is an RFC 9457 problem and return it."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"]
    assert body["detail"]
    return body
