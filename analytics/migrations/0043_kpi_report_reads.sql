-- What the KPI report reads, made cheap at a million customers: a month of buyer days by an index-only
-- scan, and wallet adoption as the worker last counted it (counting a million cards per report took
-- over a second).
CREATE INDEX kpi_buyer_days_report ON kpi_buyer_days (day)
    INCLUDE (store, source, customer_id, receipts, revenue, first_receipts);

CREATE TABLE kpi_wallet_adoption (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    taken_at     timestamptz NOT NULL,
    active_cards bigint NOT NULL,
    installed    bigint NOT NULL
);
