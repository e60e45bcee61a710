-- The points ledger, orders and refunds, tiers. Amounts are integer minor units (kopecks) and points
-- integer hundredths of a point; the constraints below are the money rules the code relies on.

CREATE TABLE accounts (
    customer_id uuid PRIMARY KEY REFERENCES customers (id),
    tier_code   text NOT NULL,
    tier_since  timestamptz NOT NULL DEFAULT now(),
    -- Points taken back by refunds after they were spent; repaid by the next credits.
    debt        bigint NOT NULL DEFAULT 0 CHECK (debt >= 0)
);

CREATE TABLE orders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        text NOT NULL UNIQUE CHECK (length(order_id) BETWEEN 1 AND 64),
    customer_id     uuid NOT NULL REFERENCES customers (id),
    card_number     text NOT NULL REFERENCES cards (number),
    api_key_id      text REFERENCES api_keys (id),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    store           text,
    terminal        text,
    purchased_at    timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    subtotal        bigint NOT NULL CHECK (subtotal >= 0),
    discount        bigint NOT NULL CHECK (discount BETWEEN 0 AND subtotal),
    redeemed_points bigint NOT NULL CHECK (redeemed_points >= 0),
    paid            bigint NOT NULL CHECK (paid >= 0),
    accrued_points  bigint NOT NULL CHECK (accrued_points >= 0),
    refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount BETWEEN 0 AND paid),
    tier_code       text NOT NULL,
    rate_bp         integer NOT NULL CHECK (rate_bp BETWEEN 0 AND 10000),
    engine          text NOT NULL,
    degraded        boolean NOT NULL,
    engine_notified boolean NOT NULL DEFAULT false,
    -- The answer the till got, replayed verbatim to a retry with the same Idempotency-Key.
    response        json,
    CHECK (paid = subtotal - discount - redeemed_points),
    UNIQUE (api_key_id, idempotency_key)
);
-- Spend in the tier window, read on every identify: an index-only scan.
CREATE INDEX orders_customer_time ON orders (customer_id, purchased_at) INCLUDE (paid, refunded_amount);

CREATE TABLE order_lines (
    order_pk        bigint NOT NULL REFERENCES orders (id),
    line_no         integer NOT NULL CHECK (line_no >= 0),
    sku             text NOT NULL,
    name            text,
    category        text,
    on_sale         boolean NOT NULL,
    qty             integer NOT NULL CHECK (qty > 0),
    unit_price      bigint NOT NULL CHECK (unit_price >= 0),
    total           bigint NOT NULL,
    discount        bigint NOT NULL CHECK (discount BETWEEN 0 AND total),
    redeemed_points bigint NOT NULL CHECK (redeemed_points >= 0),
    paid            bigint NOT NULL CHECK (paid >= 0),
    accrued_points  bigint NOT NULL CHECK (accrued_points >= 0),
    promotion       text,
    refunded_qty    integer NOT NULL DEFAULT 0 CHECK (refunded_qty BETWEEN 0 AND qty),
    PRIMARY KEY (order_pk, line_no),
    CHECK (total = qty * unit_price),
    CHECK (paid = total - discount - redeemed_points),
    CHECK (NOT on_sale OR (redeemed_points = 0 AND accrued_points = 0))
);

CREATE TABLE refunds (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    refund_id         text NOT NULL UNIQUE CHECK (length(refund_id) BETWEEN 1 AND 64),
    order_pk          bigint NOT NULL REFERENCES orders (id),
    customer_id       uuid NOT NULL REFERENCES customers (id),
    api_key_id        text REFERENCES api_keys (id),
    idempotency_key   text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash      bytea NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    amount            bigint NOT NULL CHECK (amount >= 0),
    points_taken_back bigint NOT NULL CHECK (points_taken_back >= 0),
    points_returned   bigint NOT NULL CHECK (points_returned >= 0),
    response          json,
    UNIQUE (api_key_id, idempotency_key)
);
CREATE INDEX refunds_order ON refunds (order_pk);

CREATE TABLE refund_lines (
    refund_pk         bigint NOT NULL REFERENCES refunds (id),
    order_pk          bigint NOT NULL,
    line_no           integer NOT NULL,
    qty               integer NOT NULL CHECK (qty > 0),
    amount            bigint NOT NULL CHECK (amount >= 0),
    points_taken_back bigint NOT NULL CHECK (points_taken_back >= 0),
    points_returned   bigint NOT NULL CHECK (points_returned >= 0),
    PRIMARY KEY (refund_pk, line_no),
    FOREIGN KEY (order_pk, line_no) REFERENCES order_lines (order_pk, line_no)
);

CREATE TABLE lots (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES customers (id),
    kind         text NOT NULL CHECK (kind IN ('accrual', 'grant', 'refund_return')),
    order_pk     bigint REFERENCES orders (id),
    points       bigint NOT NULL CHECK (points > 0),
    remaining    bigint NOT NULL CHECK (remaining BETWEEN 0 AND points),
    available_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    expired_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- A customer's open lots (balances, spending order) and the expiry job's queue.
CREATE INDEX lots_open ON lots (customer_id, expires_at) INCLUDE (remaining, available_at) WHERE remaining > 0;
CREATE INDEX lots_due ON lots (expires_at) WHERE remaining > 0;
CREATE INDEX lots_order ON lots (order_pk) WHERE order_pk IS NOT NULL;

CREATE TABLE ledger_entries (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    kind        text NOT NULL CHECK (kind IN ('accrual', 'redemption', 'refund_take_back', 'refund_return',
                                              'expiry', 'grant', 'adjustment')),
    points      bigint NOT NULL CHECK (points <> 0),
    order_pk    bigint REFERENCES orders (id),
    refund_pk   bigint REFERENCES refunds (id),
    lot_id      bigint REFERENCES lots (id),
    reason      text CHECK (length(reason) <= 500),
    -- Who made a manual entry (a grant): the API key or staff account.
    actor       text,
    -- When it happened for the shopper (the purchase time of an offline till's order).
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'adjustment' OR (points > 0) = (kind IN ('accrual', 'refund_return', 'grant')))
);
CREATE INDEX ledger_customer ON ledger_entries (customer_id, id);
CREATE INDEX ledger_order ON ledger_entries (order_pk) WHERE order_pk IS NOT NULL;

-- Which lots a debit took its points from (refunds give spent points back with their expiry).
CREATE TABLE lot_consumptions (
    entry_id bigint NOT NULL REFERENCES ledger_entries (id),
    lot_id   bigint NOT NULL REFERENCES lots (id),
    points   bigint NOT NULL CHECK (points > 0),
    PRIMARY KEY (entry_id, lot_id)
);
CREATE INDEX lot_consumptions_lot ON lot_consumptions (lot_id);

CREATE TABLE tier_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    from_code   text NOT NULL,
    to_code     text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('upgrade', 'downgrade')),
    spend       bigint NOT NULL,
    order_pk    bigint REFERENCES orders (id),
    changed_at  timestamptz NOT NULL,
    CHECK (from_code <> to_code)
);
CREATE INDEX tier_changes_customer ON tier_changes (customer_id, id);

-- Daily jobs claim their day here so that several workers run each once.
CREATE TABLE job_runs (
    job         text NOT NULL,
    run_on      date NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    result      jsonb,
    PRIMARY KEY (job, run_on)
);
