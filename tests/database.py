"""The suite database's state between tests: emptied before each test that can reach it, and its ledger
checked after.

``TRUNCATE`` of every table costs a new file per table and index and a catalog update each time
(about 0.1 s idle, several times that on a busy machine), while most tests write to a handful of
tables or none. So one cheap query finds the tables that hold rows and the identity sequences that
moved; small tables are emptied with ``DELETE`` (children before parents), big ones truncated, and the
sequences restarted — the same state ``TRUNCATE … RESTART IDENTITY`` of everything gave, in one round
trip and one commit.
"""

from __future__ import annotations

import graphlib
from typing import Final

import msgspec

from kartka.db import Connection

#: Above this many rows a table is truncated: deleting them row by row would cost more (and leave
#: the dead rows for the next tests to step over).
BIG: Final = 500

_TABLES = """
    SELECT c.oid, quote_ident(c.relname) AS name,
           -- a trigger or rule might refuse a DELETE or write elsewhere: truncate such tables instead
           EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
           OR EXISTS (SELECT FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN') AS guarded
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND c.relname <> 'schema_migrations'
     ORDER BY c.relname
"""

_REFERENCES = """
    SELECT DISTINCT conrelid AS child, confrelid AS parent FROM pg_constraint
     WHERE contype = 'f' AND conrelid <> confrelid AND connamespace = 'public'::regnamespace
"""

#: The sequences ``TRUNCATE … RESTART IDENTITY`` restarts: those owned by a column (identity, serial).
_SEQUENCES = """
    SELECT d.refobjid AS owner, format('%I.%I', s.schemaname, s.sequencename) AS name, s.start_value AS start
      FROM pg_sequences s
      JOIN pg_depend d ON d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
                      AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                      AND d.deptype IN ('a', 'i')
     WHERE s.schemaname = 'public'
"""


class Schema(msgspec.Struct, frozen=True):
    """What the clean-up needs to know about the tables, read once after the migrations."""

    tables: tuple[str, ...]  # children before the parents they reference
    guarded: frozenset[str]
    sequences: tuple[tuple[str, str, int], ...]  # (owning table, sequence, start)
    probe: str  # one query: each table's fill (0 empty, 1 some rows, 2 big) and the sequences used

    @classmethod
    async def read(cls, conn: Connection) -> Schema:
        rows = await conn.fetch(_TABLES)
        names = {row["oid"]: row["name"] for row in rows}
        guarded = {row["name"] for row in rows if row["guarded"]}
        graph: dict[str, set[str]] = {name: set() for name in names.values()}
        for ref in await conn.fetch(_REFERENCES):
            if ref["child"] in names and ref["parent"] in names:
                graph[names[ref["parent"]]].add(names[ref["child"]])  # a parent waits for its children
        try:
            tables = tuple(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError:  # rows that reference each other in a ring: truncate them all
            tables, guarded = tuple(graph), set(graph)
        sequences = tuple(
            (names[row["owner"]], row["name"], row["start"])
            for row in await conn.fetch(_SEQUENCES)
            if row["owner"] in names
        )
        fills = ", ".join(
            f"CASE WHEN EXISTS (SELECT FROM {t} OFFSET {BIG}) THEN 2 WHEN EXISTS (SELECT FROM {t}) THEN 1 ELSE 0 END"
            for t in tables
        )
        moved = " UNION ALL ".join(
            f"SELECT {n} WHERE pg_sequence_last_value('{name}'::regclass) IS NOT NULL"
            for n, (_, name, _) in enumerate(sequences)
        )
        probe = f"SELECT ARRAY[{fills}]::int[] AS fills, ARRAY({moved or 'SELECT 0 WHERE false'})::int[] AS moved"
        return cls(tables=tables, guarded=frozenset(guarded), sequences=sequences, probe=probe)

    async def clean(self, conn: Connection) -> None:
        """Empty every table that holds rows and restart every sequence that moved."""
        row = await conn.fetchrow(self.probe)
        assert row is not None
        fills = dict(zip(self.tables, row["fills"], strict=True))
        truncate = [t for t in self.tables if fills[t] == 2 or (fills[t] and t in self.guarded)]
        delete = [t for t in self.tables if fills[t] == 1 and t not in self.guarded]
        # TRUNCATE … CASCADE empties the tables that reference the truncated ones too, and restarts
        # their sequences: those need no DELETE and no setval.
        statements = []
        if truncate:
            statements.append(f"TRUNCATE {', '.join(truncate)} RESTART IDENTITY CASCADE")
        statements += [f"DELETE FROM {t}" for t in delete]
        restart = [self.sequences[n] for n in row["moved"]]
        if restart:
            statements.append("SELECT " + ", ".join(f"setval('{s}', {start}, false)" for _, s, start in restart))
        if statements:
            await conn.execute(";\n".join(statements))


#: Per customer, ``sum(entries.points) == sum(lots.remaining) - accounts.debt`` (wallet/ledger.py):
#: the customers for whom it does not hold. Costs nothing while the ledger tables are empty.
LEDGER_IDENTITY = """
    WITH entries AS (SELECT customer_id, sum(points) AS points FROM ledger_entries GROUP BY customer_id),
         held AS (SELECT customer_id, sum(remaining) AS points FROM lots GROUP BY customer_id),
         debts AS (SELECT customer_id, debt FROM accounts WHERE debt <> 0)
    SELECT customer_id, coalesce(e.points, 0) AS entries, coalesce(h.points, 0) AS lots, coalesce(d.debt, 0) AS debt
      FROM entries e FULL JOIN held h USING (customer_id) FULL JOIN debts d USING (customer_id)
     WHERE coalesce(e.points, 0) <> coalesce(h.points, 0) - coalesce(d.debt, 0)
"""


async def check_ledger(conn: Connection) -> None:
    """Fail when a balance disagrees with the ledger: points were created or lost."""
    wrong = await conn.fetch(LEDGER_IDENTITY)
    assert not wrong, "the ledger does not balance (entries != lots - debt): " + "; ".join(
        f"customer {r['customer_id']}: entries {r['entries']}, lots {r['lots']}, debt {r['debt']}" for r in wrong
    )
