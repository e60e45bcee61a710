"""The shopper's side of the loyalty domain: customers and cards, registration and identification, the
points ledger, tiers, orders and refunds, grants, and the Apple and Google passes. Prices through the
engine port (``wallet.pricing``); never imports Litestar."""
