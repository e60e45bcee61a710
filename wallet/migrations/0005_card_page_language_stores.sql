-- What notifications need from the wallet: the shopper's language, the card page's unguessable token
-- (the link the registration SMS carries: {public URL}/c/{token}), and stores with their time zones
-- (marketing quiet hours are kept in the shopper's store's local time).
ALTER TABLE customers ADD COLUMN language text CHECK (language IN ('ru', 'en'));

-- 122 random bits per token; rotating it (a new random value) makes old links dead.
ALTER TABLE cards ADD COLUMN page_token text NOT NULL UNIQUE
    DEFAULT replace(gen_random_uuid()::text, '-', '') CHECK (page_token ~ '^[0-9a-f]{32}$');

CREATE TABLE stores (
    code       text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    timezone   text NOT NULL CHECK (length(timezone) BETWEEN 1 AND 64),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Each customer's home store: where they registered first (NULL for online and imported customers).
ALTER TABLE customers ADD COLUMN home_store text;
UPDATE customers cu SET home_store = r.store
  FROM (SELECT DISTINCT ON (customer_id) customer_id, store FROM registrations
         WHERE store IS NOT NULL ORDER BY customer_id, id) r
 WHERE r.customer_id = cu.id;
