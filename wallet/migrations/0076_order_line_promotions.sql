-- Every promotion applied to a line, as the line's receipt named it: [{id, revision, discount,
-- points}], NULL for a line none applied to. Written with the line in the order's own insert, so a
-- commit with promotions writes no table more for them; a refund gives back each one's share of the
-- units it returns, worked out from the line's own quantities.
ALTER TABLE order_lines ADD COLUMN promotions jsonb;
