-- A commit's promotion rows are written by the book in the order's own transaction, with the id the
-- order's insert has just returned, and orders are never deleted: the foreign keys to orders checked
-- what cannot go wrong, one lookup of the order per row (about 10 µs each, 13 rows on a typical cart
-- with promotions: a sixth of what the book's writes cost a commit).
ALTER TABLE order_promotions DROP CONSTRAINT order_promotions_order_pk_fkey;
ALTER TABLE promotion_uses DROP CONSTRAINT promotion_uses_order_pk_fkey;

