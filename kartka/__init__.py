"""Shared infrastructure: settings, database, migrations, clock, API keys and the ``kartka`` CLI."""
