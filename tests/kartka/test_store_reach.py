"""A store manager's reach: the stores an admin assigned, read from the database on every request."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kartka.db import Connection
from kartka.errors import InvalidInput, NotFound
from kartka.keys import Scope
from kartka.staff import CHAIN, Reach, Role, StoreForbidden, assign_stores, create_staff, reach_of, staff_stores
from tests.helpers import PASSWORDS, Keys, problem

PASSWORD = "correct horse battery staple"
KNOWN = ("store-1", "store-2", "store-3")


def test_a_reach_lets_its_stores_through_and_nothing_else() -> None:
    CHAIN.check(None)
    CHAIN.check("anywhere")
    mine = Reach(frozenset({"store-1"}))
    mine.check("store-1")
    with pytest.raises(StoreForbidden, match="not one of yours"):
        mine.check("store-2")
    with pytest.raises(StoreForbidden, match="name one of them"):
        mine.check(None)  # the whole chain is not a store of theirs


async def test_an_admin_assigns_stores_to_a_store_manager_only(conn: Connection) -> None:
    manager = await create_staff(conn, PASSWORDS, username="sasha", role=Role.STORE_MANAGER, password=PASSWORD)
    marketer = await create_staff(conn, PASSWORDS, username="mila", role=Role.MARKETER, password=PASSWORD)
    assert await reach_of(conn, manager.id) == Reach(frozenset())  # nothing until an admin assigns a store
    assert await reach_of(conn, marketer.id) == CHAIN
    assert await reach_of(conn, None) == CHAIN  # an admin key

    assert await assign_stores(conn, "Sasha", ["store-2", "store-1", "store-2"], known=KNOWN) == ["store-1", "store-2"]
    assert await reach_of(conn, manager.id) == Reach(frozenset({"store-1", "store-2"}))
    assert await assign_stores(conn, "sasha", ["store-3"], known=KNOWN) == ["store-3"]  # replaces the list
    assert await staff_stores(conn) == {manager.id: ["store-3"]}

    with pytest.raises(InvalidInput, match="no such store: mars"):
        await assign_stores(conn, "sasha", ["store-1", "mars"], known=KNOWN)
    with pytest.raises(InvalidInput, match="only a store manager"):
        await assign_stores(conn, "mila", ["store-1"], known=KNOWN)
    with pytest.raises(NotFound):
        await assign_stores(conn, "nobody", [], known=KNOWN)
    assert await reach_of(conn, manager.id) == Reach(frozenset({"store-3"}))


async def test_the_admin_api_assigns_stores_as_the_console_does(
    client: AsyncTestClient[Litestar], keys: Keys, conn: Connection
) -> None:
    admin = await keys.headers(Scope.ADMIN)
    for code in ("store-1", "store-2"):
        saved = await client.put(
            f"/v1/admin/stores/{code}", json={"name": code, "timezone": "Europe/Minsk"}, headers=admin
        )
        assert saved.status_code == 200, saved.text
    manager = await create_staff(conn, PASSWORDS, username="sasha", role=Role.STORE_MANAGER, password=PASSWORD)
    await create_staff(conn, PASSWORDS, username="mila", role=Role.MARKETER, password=PASSWORD)

    done = await client.put("/v1/admin/staff/sasha/stores", json={"stores": ["store-2"]}, headers=admin)
    assert (done.status_code, done.json()) == (200, {"stores": ["store-2"]})
    assert await reach_of(conn, manager.id) == Reach(frozenset({"store-2"}))
    for username, body, status in (
        ("sasha", {"stores": ["mars"]}, 422),  # no such store
        ("mila", {"stores": ["store-1"]}, 422),  # a marketer sees every store
        ("nobody", {"stores": []}, 404),
        ("sasha", {"stores": ["store-1"], "extra": 1}, 422),
    ):
        refused = await client.put(f"/v1/admin/staff/{username}/stores", json=body, headers=admin)
        assert refused.status_code == status, (username, refused.text)
        problem(refused)
    assert await reach_of(conn, manager.id) == Reach(frozenset({"store-2"}))  # nothing half-done
    pos = await keys.headers(Scope.POS)
    assert (await client.put("/v1/admin/staff/sasha/stores", json={"stores": []}, headers=pos)).status_code == 403
