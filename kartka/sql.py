"""Named parameters for long statements: write ``:name`` in the SQL, pass the values by keyword.

asyncpg speaks PostgreSQL's positional ``$1 … $n``. Past a handful of parameters the numbers drift
from the values (an insert once listed ``…$18, $29, $30``); a name cannot. A statement is compiled
once, at import: each distinct ``:name`` becomes one ``$n`` in order of first appearance, and
:meth:`Named.bind` returns the text and the values in that order, refusing a missing or unknown name.

A ``:name`` is a colon followed by a letter or ``_`` and not preceded by a colon or a word character,
so casts (``::int[]``) and times in literals (``'12:30'``) are left alone. Keep ``:word`` out of string
literals and comments of a named statement.

A :class:`Part` is a piece of SQL with its own ``:name`` parameters that another module's statement
carries (a commit's snapshot carries the promotion book's read of its limits): one round trip instead
of two, without the caller knowing the part's tables. :func:`named` compiles such compositions once
per distinct text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

_NAME: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Named:
    """A statement with ``:name`` parameters, compiled to ``$n`` once."""

    __slots__ = ("names", "sql")

    def __init__(self, text: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.sql: Final = _NAME.sub(number, text)
        self.names: Final = tuple(names)

    def bind(self, **values: Any) -> tuple[Any, ...]:
        """``(sql, value_1, …, value_n)``, ready to splat into ``conn.fetchval(*statement.bind(...))``."""
        if missing := [name for name in self.names if name not in values]:
            raise TypeError(f"missing SQL parameters: {', '.join(missing)}")
        if unknown := sorted(set(values) - set(self.names)):
            raise TypeError(f"unknown SQL parameters: {', '.join(unknown)}")
        return (self.sql, *(values[name] for name in self.names))

    def __repr__(self) -> str:
        return f"Named({self.sql!r})"


class Part(NamedTuple):
    """SQL for another statement to carry, and the values of its ``:name`` parameters (prefixed by its
    owner, so that they never meet the carrier's)."""

    sql: str
    values: Mapping[str, Any]


@functools.lru_cache(maxsize=128)
def named(text: str) -> Named:
    """:class:`Named` of ``text``, compiled once: for statements composed at run time from a few parts
    (a handful of distinct texts, each compiled on first use)."""
    return Named(text)
