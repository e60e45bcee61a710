-- Saved segments and the per-customer facts their rules are evaluated against.
--
-- customer_facts holds one row per live customer (not merged away, not closed): everything a segment
-- rule may ask, denormalised so a rule compiles to one scan of one narrow table. It is kept fresh by the
-- worker: customers touched by an order, refund, ledger entry, registration or tier change since the
-- last round are refreshed every round (analytics_marks holds how far each source table was read), and
-- the daily job rebuilds every row (in batches, resumably) and then scores RFM and lifecycle.

CREATE TABLE customer_facts (
    -- No foreign key: derived rows, rebuilt daily (customers are never deleted, only merged or closed).
    customer_id       uuid PRIMARY KEY,
    tier_code         text NOT NULL,
    registered_at     timestamptz NOT NULL,
    source            text NOT NULL,
    home_store        text,
    -- month * 100 + day of the birthday (MMDD), so "within N days" is a list of MMDD values.
    birthday_md       smallint CHECK (birthday_md BETWEEN 101 AND 1231),
    consent_marketing boolean NOT NULL,
    has_wallet_pass   boolean NOT NULL,
    -- Available points (hundredths) at the refresh, debt deducted.
    balance           bigint NOT NULL,
    -- Net of refunds; a fully refunded order is not a purchase.
    spend_365d        bigint NOT NULL,
    orders_365d       integer NOT NULL,
    revenue_total     bigint NOT NULL,
    orders_total      integer NOT NULL,
    first_purchase_at timestamptz,
    last_purchase_at  timestamptz,
    -- Scores 1-5 and the named segment, for customers with a purchase in the RFM window; else NULL.
    rfm_r             smallint CHECK (rfm_r BETWEEN 1 AND 5),
    rfm_f             smallint CHECK (rfm_f BETWEEN 1 AND 5),
    rfm_m             smallint CHECK (rfm_m BETWEEN 1 AND 5),
    rfm_segment       text,
    lifecycle         text CHECK (lifecycle IN
                          ('new', 'no_purchase', 'one_purchase', 'active', 'churn_risk', 'churned')),
    refreshed_at      timestamptz NOT NULL,
    scored_at         timestamptz
);
CREATE INDEX customer_facts_last_purchase ON customer_facts (last_purchase_at);
CREATE INDEX customer_facts_spend ON customer_facts (spend_365d);
CREATE INDEX customer_facts_rfm ON customer_facts (rfm_segment);
CREATE INDEX customer_facts_lifecycle ON customer_facts (lifecycle);

CREATE TABLE segments (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    rule        jsonb NOT NULL,
    -- Other segments this rule names (any_of / none_of): what the cycle check and DELETE look at.
    refs        text[] NOT NULL DEFAULT '{}',
    size        integer NOT NULL DEFAULT 0,
    computed_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    updated_by  text
);

-- How far the incremental refresh has read each source table (by its identity column).
CREATE TABLE analytics_marks (
    name    text PRIMARY KEY,
    last_id bigint NOT NULL
);

-- The daily recompute: one row per program-local day; a worker claims it, moves the cursor after each
-- committed batch of facts, then scores; a worker that died leaves the cursor for the next to resume.
CREATE TABLE analytics_runs (
    run_on      date PRIMARY KEY,
    stage       text NOT NULL DEFAULT 'facts' CHECK (stage IN ('facts', 'scores', 'done')),
    cursor_id   uuid,
    started_at  timestamptz NOT NULL DEFAULT now(),
    touched_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    result      jsonb
);

-- Lifecycle thresholds estimated each day (days), for the report and the record.
CREATE TABLE lifecycle_thresholds (
    run_on    date PRIMARY KEY,
    t50_days  numeric NOT NULL,
    t90_days  numeric NOT NULL,
    gaps      integer NOT NULL,
    estimated boolean NOT NULL
);
