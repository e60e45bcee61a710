-- The brand a cart line named (promotions select lines by brand as by sku and category). Kept with the
-- line, so a backtest re-prices a stored order with the lines its till priced, and a remote engine's
-- notice tells the line as the till sent it. Lines stored before this have none.
ALTER TABLE order_lines ADD COLUMN brand text;
