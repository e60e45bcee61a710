"""Wallet passes: Apple's signed ``.pkpass``, Google Wallet objects, and the keys and certificates behind them."""
