"""The loyalty domain: customers and cards, registration, identification (and later the ledger,
tiers, pricing engine and wallet passes). Never imports Litestar."""
