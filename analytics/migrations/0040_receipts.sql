-- Every receipt: the tills and the online shop report purchases made without a card here (a purchase
-- with a card is wallet's order). Ids are the till's own numbering, unique within a channel and store,
-- as order ids are; the same id as an order of the same store and channel is the same purchase, and the
-- KPIs count it once, as the order (analytics/kpis_rollup.py).
CREATE TABLE receipts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receipt_id      text NOT NULL CHECK (length(receipt_id) BETWEEN 1 AND 64),
    channel         text NOT NULL CHECK (channel IN ('pos', 'online')),
    store           text CHECK (store ~ '^[A-Za-z0-9_.-]{1,64}$'),
    terminal        text CHECK (terminal ~ '^[A-Za-z0-9_.-]{1,64}$'),
    api_key_id      text REFERENCES api_keys (id),
    -- NULL for rows of a bulk import (the file is the unit of retry there).
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    bytea,
    purchased_at    timestamptz NOT NULL,
    total           bigint NOT NULL CHECK (total >= 0),
    refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount BETWEEN 0 AND total),
    imported        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- The answer the till got, replayed verbatim to a retry with the same Idempotency-Key.
    response        json,
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL)),
    CHECK (channel = 'online' OR store IS NOT NULL)
);
CREATE UNIQUE INDEX receipts_scoped_id ON receipts (channel, coalesce(store, ''), receipt_id);
CREATE UNIQUE INDEX receipts_key ON receipts (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- A day's receipts, read by the rollup without touching the heap.
CREATE INDEX receipts_purchased_at ON receipts (purchased_at) INCLUDE (total, refunded_amount, store, channel);

CREATE TABLE receipt_lines (
    receipt_pk bigint NOT NULL REFERENCES receipts (id),
    line_no    integer NOT NULL CHECK (line_no >= 0),
    sku        text NOT NULL,
    name       text,
    category   text,
    qty        integer NOT NULL CHECK (qty > 0),
    unit_price bigint NOT NULL CHECK (unit_price >= 0),
    discount   bigint NOT NULL CHECK (discount BETWEEN 0 AND qty * unit_price),
    PRIMARY KEY (receipt_pk, line_no)
);

-- Refunds of receipts without a card: money only (no points were involved), never above the receipt.
CREATE TABLE receipt_refunds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    refund_id       text NOT NULL CHECK (length(refund_id) BETWEEN 1 AND 64),
    receipt_pk      bigint NOT NULL REFERENCES receipts (id),
    channel         text NOT NULL CHECK (channel IN ('pos', 'online')),
    store           text,
    api_key_id      text REFERENCES api_keys (id),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    response        json
);
CREATE UNIQUE INDEX receipt_refunds_scoped_id ON receipt_refunds (channel, coalesce(store, ''), refund_id);
CREATE UNIQUE INDEX receipt_refunds_key ON receipt_refunds (api_key_id, idempotency_key);
CREATE INDEX receipt_refunds_receipt ON receipt_refunds (receipt_pk);
