-- Daily rollups behind the KPI report (analytics/kpis_rollup.py, docs/analytics.md): the report reads
-- these, never the orders or the ledger, so it answers in well under a second at 10 M receipts.
-- Days are the program's local dates; store '' means none (online without a store).

-- Identified purchases: one row per customer, day, store and source (pos / online). Enough for every
-- receipt figure, the buyers (distinct customers over any period) and the repeat share: a customer's
-- first counting purchase ever is their one non-repeat receipt.
CREATE TABLE kpi_buyer_days (
    day            date NOT NULL,
    store          text NOT NULL,
    source         text NOT NULL CHECK (source IN ('pos', 'online')),
    customer_id    uuid NOT NULL,
    receipts       integer NOT NULL CHECK (receipts > 0),
    revenue        bigint NOT NULL CHECK (revenue > 0),
    first_receipts integer NOT NULL CHECK (first_receipts BETWEEN 0 AND receipts),
    PRIMARY KEY (day, store, source, customer_id)
);

-- Receipts without a card (refunds netted, superseded ones and fully refunded ones left out).
CREATE TABLE kpi_anonymous_days (
    day      date NOT NULL,
    store    text NOT NULL,
    source   text NOT NULL CHECK (source IN ('pos', 'online')),
    receipts integer NOT NULL CHECK (receipts > 0),
    revenue  bigint NOT NULL CHECK (revenue > 0),
    PRIMARY KEY (day, store, source)
);

-- The points ledger summed per hour (UTC) of occurrence, store and source of the order behind the entry
-- ('' for entries of no order: grants, adjustments, expiry). Additive: each ledger entry is added once.
CREATE TABLE kpi_points_hours (
    hour       timestamptz NOT NULL,
    store      text NOT NULL,
    source     text NOT NULL,
    accrued    bigint NOT NULL DEFAULT 0,
    spent      bigint NOT NULL DEFAULT 0,
    granted    bigint NOT NULL DEFAULT 0,
    adjusted   bigint NOT NULL DEFAULT 0,
    taken_back bigint NOT NULL DEFAULT 0,
    returned   bigint NOT NULL DEFAULT 0,
    expired    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, store, source)
);

-- Days whose receipt rollups are to be recomputed; the recompute deletes its row in its own transaction.
CREATE TABLE kpi_dirty_days (
    day       date PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);

-- How far the worker has read each table it follows (by id), so each row is looked at once.
CREATE TABLE kpi_feeds (
    feed       text PRIMARY KEY,
    done       bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
