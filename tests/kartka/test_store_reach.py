"""A store manager's reach: the stores an admin assigned, read from the database on every request."""

from __future__ import annotations

import pytest

from kartka.db import Connection
from kartka.errors import InvalidInput, NotFound
from kartka.staff import CHAIN, Reach, Role, StoreForbidden, assign_stores, create_staff, reach_of, staff_stores
from tests.helpers import PASSWORDS

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
