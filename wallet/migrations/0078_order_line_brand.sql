-- The brand a cart line named (promotions select lines by brand as by sku and category). Kept with the
-- line, so a backtest re-prices a stored order with the lines its till priced, and a remote engine's
-- notice tells the line as the till sent it. Lines stored before this have none.
--
-- Adding a column without a default writes no row, but takes the table's lock for a moment: waiting
-- behind a long reader (a backtest reads order_lines in one transaction) would queue every till's commit
-- behind the migration, so it gives up after 5 s instead (run `kartka migrate` again).
SET LOCAL lock_timeout = '5s';
ALTER TABLE order_lines ADD COLUMN brand text;
