"""Fixtures the admin API's tests share."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Pool
from kartka.staff import Role, create_staff
from tests.helpers import PASSWORDS

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery staple"


class Staff:
    """Signed-in staff members by role: ``ada`` and ``bob`` (admins), ``mark`` (marketer), ``sue`` (support)."""

    def __init__(self, client: Client, headers: dict[str, dict[str, str]]) -> None:
        self.client = client
        self.headers = headers

    async def call(self, who: str, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=self.headers[who], **kwargs)
        assert response.status_code == expect, response.text
        return response.json()


@pytest.fixture
async def staff(client: Client, pool: Pool) -> Staff:
    headers: dict[str, dict[str, str]] = {}
    for name, role in (("ada", Role.ADMIN), ("bob", Role.ADMIN), ("mark", Role.MARKETER), ("sue", Role.SUPPORT)):
        async with pool.acquire() as conn:
            await create_staff(conn, PASSWORDS, username=name, role=role, password=PASSWORD)
        response = await client.post("/v1/admin/login", json={"username": name, "password": PASSWORD})
        assert response.status_code == 200, response.text
        headers[name] = {"Authorization": f"Bearer {response.json()['access_token']}"}
    return Staff(client, headers)
