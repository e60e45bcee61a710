"""The core engine: prices carts behind the port ``wallet.pricing`` defines. The embedded engine (the
default) applies the program's rules and its promotions; ``engine.http`` is the client of a remote
engine (``docs/engine-contract.md``). ``engine.setup`` builds the one the settings name."""
