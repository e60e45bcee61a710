-- A refund works out what it may take back with the customer's account locked: the expiry entries of
-- the order's lots are found by lot, not by reading the whole ledger (wallet/orders.py, _TAKEABLE).
CREATE INDEX ledger_expiry_lot ON ledger_entries (lot_id) WHERE kind = 'expiry';

-- Order ids are the till's (or the online shop's) own numbering: unique within a store and channel,
-- not across the chain. Two stores may both sell an order "1001"; a refund names its order within the
-- refunding till's store unless it says otherwise. Online orders have no store ('' below).
ALTER TABLE orders DROP CONSTRAINT orders_order_id_key;
CREATE UNIQUE INDEX orders_scoped_id ON orders (channel, coalesce(store, ''), order_id);

-- Refund ids likewise belong to whoever made the refund: its channel and store.
ALTER TABLE refunds ADD COLUMN channel text NOT NULL DEFAULT 'pos' CHECK (channel IN ('pos', 'online'));
ALTER TABLE refunds ADD COLUMN store text;
UPDATE refunds r SET channel = CASE k.scope WHEN 'integration' THEN 'online' ELSE 'pos' END, store = k.store
  FROM api_keys k WHERE k.id = r.api_key_id;
ALTER TABLE refunds ALTER COLUMN channel DROP DEFAULT;
ALTER TABLE refunds DROP CONSTRAINT refunds_refund_id_key;
CREATE UNIQUE INDEX refunds_scoped_id ON refunds (channel, coalesce(store, ''), refund_id);
