"""Wallet-pass install figures from the kept history: Apple registrations and unregistrations, Google's
save and delete callbacks (``wallet.passes.callbacks``). The inputs of "wallet adoption" and "passes
removed" (specs/analytics.md); the analytics reports read them from here."""

from __future__ import annotations

from datetime import datetime

import msgspec

from kartka.db import Connection


class InstallFigures(msgspec.Struct, frozen=True):
    apple_installs: int
    """Apple registrations made in the period (a phone adding the pass; a re-add counts again)."""
    apple_removals: int
    """Apple registrations removed in the period: unregistered by the phone or dead at APNs (410)."""
    google_saves: int
    google_deletes: int
    cards_with_pass: int
    """Active cards that, at the period's end, had a live Apple registration or a Google pass whose last
    callback was a save."""
    active_cards: int
    """Active cards now (the denominator of wallet adoption)."""


async def install_figures(conn: Connection, start: datetime, end: datetime) -> InstallFigures:
    """The figures for ``[start, end)``."""
    row = await conn.fetchrow(
        """
        WITH apple AS (
            SELECT count(*) FILTER (WHERE created_at >= $1) AS installs,
                   count(*) FILTER (WHERE removed_at >= $1 AND removed_at < $2) AS removals
              FROM pass_registrations
             WHERE created_at < $2 AND (created_at >= $1 OR removed_at >= $1)
        ), google AS (
            SELECT count(*) FILTER (WHERE event_type = 'save') AS saves,
                   count(*) FILTER (WHERE event_type = 'del') AS deletes
              FROM google_wallet_events WHERE received_at >= $1 AND received_at < $2
        ), holding AS (
            SELECT p.card_number FROM pass_registrations r JOIN passes p USING (serial_number)
             WHERE r.created_at < $2 AND (r.removed_at IS NULL OR r.removed_at >= $2)
            UNION
            SELECT p.card_number
              FROM (SELECT DISTINCT ON (serial_number) serial_number, event_type FROM google_wallet_events
                     WHERE serial_number IS NOT NULL AND received_at < $2
                     ORDER BY serial_number, received_at DESC, id DESC) g
              JOIN passes p USING (serial_number)
             WHERE g.event_type = 'save'
        )
        SELECT apple.installs, apple.removals, google.saves, google.deletes,
               (SELECT count(*) FROM holding h JOIN cards c ON c.number = h.card_number AND c.status = 'active')
                   AS cards_with_pass,
               (SELECT count(*) FROM cards WHERE status = 'active') AS active_cards
          FROM apple, google
        """,
        start,
        end,
    )
    assert row is not None
    return InstallFigures(
        apple_installs=row["installs"],
        apple_removals=row["removals"],
        google_saves=row["saves"],
        google_deletes=row["deletes"],
        cards_with_pass=row["cards_with_pass"],
        active_cards=row["active_cards"],
    )
