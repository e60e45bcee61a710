-- The KPI report at 10 M receipts reads rollups only (analytics/kpis_rollup.py, docs/analytics.md):
-- what is counted distinct over a period is kept per period, the liability as monthly totals, and
-- wallet adoption per day from the install history.

-- Distinct buyers (and those with two or more receipts) per local day, week (from Monday) and month, for
-- the chain ('*', '*'), each store (store, '*'), each source ('*', source) and each store and source:
-- distinct counts do not add up, so every scope the report asks for is kept. Receipts, revenue and first
-- receipts come along (they do add up; the row then answers a whole period alone). Recomputed from
-- kpi_buyer_days a whole period at a time when one of its days was (kpi_dirty_periods).
CREATE TABLE kpi_buyer_counts (
    grain          text NOT NULL CHECK (grain IN ('day', 'week', 'month')),
    period_start   date NOT NULL,
    store          text NOT NULL,
    source         text NOT NULL,
    receipts       bigint NOT NULL,
    revenue        bigint NOT NULL,
    first_receipts bigint NOT NULL,
    buyers         bigint NOT NULL,
    repeat_buyers  bigint NOT NULL,
    PRIMARY KEY (grain, period_start, store, source)
);

-- Days, weeks and months whose days were recomputed since their counts were; the recompute of a period
-- deletes its row in its own transaction (a crash leaves it to the next round).
CREATE TABLE kpi_dirty_periods (
    grain        text NOT NULL CHECK (grain IN ('day', 'week', 'month')),
    period_start date NOT NULL,
    marked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grain, period_start)
);
INSERT INTO kpi_dirty_periods (grain, period_start)
SELECT DISTINCT g.grain, date_trunc(g.grain, d.day::timestamp)::date
  FROM (SELECT DISTINCT day FROM kpi_buyer_days) d CROSS JOIN (VALUES ('day'), ('week'), ('month')) g (grain);

-- The sum of the ledger per UTC month: the liability at a moment is the months before it plus the hours
-- of its own month (kpi_points_hours), never the whole history. Added to with the hours, entry by entry.
CREATE TABLE kpi_points_months (
    month timestamptz PRIMARY KEY,
    net   bigint NOT NULL
);
INSERT INTO kpi_points_months (month, net)
SELECT date_trunc('month', hour, 'UTC'),
       sum(accrued + granted + adjusted + returned - spent - taken_back - expired)
  FROM kpi_points_hours GROUP BY 1;

-- Wallet adoption at the end of each local day from the install history (wallet's migration 0020): active
-- cards, and of them those with a pass on a phone (an Apple registration not removed, a Google save not
-- followed by a delete). A row per day on which either changed; the figure for a moment is the last row
-- before it. Rebuilt whole by the worker each round.
DROP TABLE kpi_wallet_adoption;
CREATE TABLE kpi_wallet_days (
    day          date PRIMARY KEY,
    active_cards bigint NOT NULL,
    installed    bigint NOT NULL
);
