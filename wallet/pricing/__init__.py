"""Pricing is delegated to a core engine behind a port: the embedded rules engine (default) or an HTTP
client for a remote one. See ``docs/engine-contract.md``."""
