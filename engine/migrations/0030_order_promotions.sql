-- What the embedded engine's promotions gave on each order, and what their limits have counted.
-- Written in the commit's (or refund's) transaction through the wallet's PromotionBook port, so an
-- order and its promotions are recorded together or not at all.

-- Which promotion revision gave what on which line: refunds give back exactly a returned part's share,
-- and reports stay true after a promotion changes.
CREATE TABLE order_promotions (
    order_pk          bigint NOT NULL REFERENCES orders (id),
    line_no           int NOT NULL CHECK (line_no >= 0),
    promotion_id      text NOT NULL,
    revision          int NOT NULL CHECK (revision >= 1),
    discount          bigint NOT NULL CHECK (discount >= 0),
    points            bigint NOT NULL CHECK (points >= 0),
    returned_discount bigint NOT NULL DEFAULT 0 CHECK (returned_discount BETWEEN 0 AND discount),
    returned_points   bigint NOT NULL DEFAULT 0 CHECK (returned_points BETWEEN 0 AND points),
    PRIMARY KEY (order_pk, line_no, promotion_id)
);
CREATE INDEX order_promotions_promotion ON order_promotions (promotion_id, order_pk);

-- One row per order that used a promotion: what per-customer limits count (rolling windows) and what
-- a full refund gives back.
CREATE TABLE promotion_uses (
    order_pk     bigint NOT NULL REFERENCES orders (id),
    promotion_id text NOT NULL,
    revision     int NOT NULL CHECK (revision >= 1),
    customer_id  uuid NOT NULL,
    used_at      timestamptz NOT NULL,
    returned     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (order_pk, promotion_id)
);
CREATE INDEX promotion_uses_customer ON promotion_uses (customer_id, promotion_id, used_at) WHERE NOT returned;

-- A budget's running totals, one row per promotion with a budget: the row a commit locks, so parallel
-- commits count one after another and a budget of 5 orders gives exactly 5.
CREATE TABLE promotion_budgets (
    promotion_id text PRIMARY KEY,
    orders       bigint NOT NULL DEFAULT 0 CHECK (orders >= 0),
    discount     bigint NOT NULL DEFAULT 0 CHECK (discount >= 0),
    points       bigint NOT NULL DEFAULT 0 CHECK (points >= 0)
);
