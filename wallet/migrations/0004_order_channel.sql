-- Where an order was made: at a till (pos keys) or online (integration keys). Integration keys may
-- refund only online orders; tills take returns of any order (buy online, return in store).
ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'pos' CHECK (channel IN ('pos', 'online'));
