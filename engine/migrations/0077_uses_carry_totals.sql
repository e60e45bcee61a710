-- A promotion's use of an order now carries what it gave there in all and what refunds took back;
-- what it gave on each line lives on the order's lines (0076). The per-line table is no longer
-- written: a commit with promotions wrote it as a third table (~0.1 ms of a ~4 ms commit), and each of
-- its rows repeated what the line's refunded quantity already says.
--
-- It is kept, read by no one, for one release: a replica of the release before still writes it (and
-- its uses without totals) during a rolling deploy. The release that drops it first copies in what
-- was written there meanwhile, with the three statements below.
--
-- Run as the release step (`kartka migrate`), it takes its tables' locks for a moment: a commit of the
-- release before that holds a budget row and then writes a use can deadlock with it, and PostgreSQL
-- then ends one of the two after a second (a till retries a 503; run the migration again if it was the
-- one).
ALTER TABLE promotion_uses
    ADD COLUMN discount bigint NOT NULL DEFAULT 0 CHECK (discount >= 0),
    ADD COLUMN points bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    ADD COLUMN returned_discount bigint NOT NULL DEFAULT 0,
    ADD COLUMN returned_points bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT promotion_uses_returned_discount CHECK (returned_discount BETWEEN 0 AND discount),
    ADD CONSTRAINT promotion_uses_returned_points CHECK (returned_points BETWEEN 0 AND points);

UPDATE order_lines l SET promotions = p.applied
  FROM (SELECT order_pk, line_no,
               jsonb_agg(jsonb_build_object('id', promotion_id, 'revision', revision, 'discount', discount,
                                            'points', points) ORDER BY promotion_id) AS applied
          FROM order_promotions GROUP BY order_pk, line_no) p
 WHERE l.order_pk = p.order_pk AND l.line_no = p.line_no;

-- Every order a promotion gave something on has its use (a use went with every promotion from the
-- start; the insert is for any that did not), returned when every unit of the order went back.
INSERT INTO promotion_uses (order_pk, promotion_id, revision, customer_id, used_at, returned, discount, points,
                            returned_discount, returned_points)
SELECT p.order_pk, p.promotion_id, min(p.revision), o.customer_id, o.purchased_at,
       NOT EXISTS (SELECT 1 FROM order_lines l WHERE l.order_pk = p.order_pk AND l.refunded_qty < l.qty),
       sum(p.discount), sum(p.points), sum(p.returned_discount), sum(p.returned_points)
  FROM order_promotions p JOIN orders o ON o.id = p.order_pk
 GROUP BY p.order_pk, p.promotion_id, o.customer_id, o.purchased_at
    ON CONFLICT (order_pk, promotion_id) DO UPDATE
   SET discount = excluded.discount, points = excluded.points,
       returned_discount = excluded.returned_discount, returned_points = excluded.returned_points;

-- A budget counts over the promotion's life: every row as its uses say (a row made when a budget was
-- added to a running promotion started at nothing), so that a refund of an order from before it gives
-- back what the row holds.
UPDATE promotion_budgets b
   SET orders = coalesce(s.orders, 0), discount = coalesce(s.discount, 0), points = coalesce(s.points, 0)
  FROM promotion_budgets r
  LEFT JOIN (SELECT promotion_id, count(*) FILTER (WHERE NOT returned) AS orders,
                    sum(discount - returned_discount) AS discount, sum(points - returned_points) AS points
               FROM promotion_uses GROUP BY promotion_id) s ON s.promotion_id = r.promotion_id
 WHERE b.promotion_id = r.promotion_id;

-- Whether commits count into the row: a commit counts only into the rows of the budgets it prices
-- with, so the row of a promotion whose budget went stands still until the budget comes back and the
-- live catalog makes it again from the uses (engine/promotions/reload.py).
ALTER TABLE promotion_budgets ADD COLUMN counting boolean NOT NULL DEFAULT true;

-- A promotion's usage so far (the staff's view of it) sums its uses.
CREATE INDEX promotion_uses_promotion ON promotion_uses (promotion_id);
