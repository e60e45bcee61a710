"""Which packages own database migrations: the one list the migration runner (``kartka.migrate``) is given.

A package that gets a ``migrations/`` folder is added here. The numbers are global across packages and
give the order; the order of this list does not matter.
"""

from __future__ import annotations

from kartka.migrate import Schema

PACKAGES = ("kartka", "wallet", "engine", "notifications", "analytics")
SCHEMA = Schema(PACKAGES)
