-- A refund works out what it may take back with the customer's account locked: the expiry entries of
-- the order's lots are found by lot, not by reading the whole ledger (wallet/orders.py, _TAKEABLE).
CREATE INDEX ledger_expiry_lot ON ledger_entries (lot_id) WHERE kind = 'expiry';
