"""Named parameters: each name one ``$n`` in order of first use, casts and literals left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kartka.sql import Named


def test_names_become_numbers_in_order_of_first_use_and_repeat_as_the_same_number() -> None:
    statement = Named("SELECT :b::int[], :a, :b, '12:30'::time, x::text FROM t WHERE y = :a_2")
    assert statement.sql == "SELECT $1::int[], $2, $1, '12:30'::time, x::text FROM t WHERE y = $3"
    assert statement.names == ("b", "a", "a_2")
    assert statement.bind(a=1, b=[2], a_2="z") == (statement.sql, [2], 1, "z")


def test_a_missing_or_unknown_name_is_refused_before_the_database_sees_it() -> None:
    statement = Named("SELECT :a, :b")
    with pytest.raises(TypeError, match="missing SQL parameters: b"):
        statement.bind(a=1)
    with pytest.raises(TypeError, match="unknown SQL parameters: c"):
        statement.bind(a=1, b=2, c=3)


@given(st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=12))
def test_values_follow_their_names_whatever_the_order(names: list[str]) -> None:
    statement = Named("SELECT " + ", ".join(f":{name}::text" for name in names))
    distinct = list(dict.fromkeys(names))
    sql, *values = statement.bind(**{name: f"v-{name}" for name in distinct})
    assert statement.names == tuple(distinct)
    assert values == [f"v-{name}" for name in distinct]
    assert sql == "SELECT " + ", ".join(f"${distinct.index(name) + 1}::text" for name in names)
