-- Customers keyed by phone (E.164), their cards, and every registration with where it came from.

CREATE FUNCTION ean13_valid(number text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT number ~ '^[0-9]{13}$'
       AND (10 - (SELECT sum(substr(number, i, 1)::int * CASE WHEN i % 2 = 0 THEN 3 ELSE 1 END)
                  FROM generate_series(1, 12) AS i) % 10) % 10 = substr(number, 13, 1)::int
$$;

CREATE TABLE customers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone       text UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name        text CHECK (length(name) BETWEEN 1 AND 200),
    email       text CHECK (length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
    source      text NOT NULL CHECK (source IN
                    ('pos', 'qr_poster', 'app', 'website', 'online_order', 'crm_import', 'manual')),
    -- A no-name customer whose card was attached to a phone that already had one points here.
    merged_into uuid REFERENCES customers (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (merged_into IS NULL OR phone IS NULL)
);

CREATE TABLE cards (
    number      text PRIMARY KEY CHECK (ean13_valid(number)),
    customer_id uuid NOT NULL REFERENCES customers (id),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'replaced')),
    replaced_by text REFERENCES cards (number),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz,
    CHECK (status <> 'replaced' OR replaced_by IS NOT NULL),
    CHECK (replaced_by IS NULL OR replaced_by <> number)
);
-- One card per customer in use at a time; replaced and blocked cards stay for history and scans.
CREATE UNIQUE INDEX cards_one_active_per_customer ON cards (customer_id) WHERE status = 'active';
CREATE INDEX cards_customer ON cards (customer_id);

CREATE TABLE registrations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    card_number text REFERENCES cards (number),
    source      text NOT NULL CHECK (source IN
                    ('pos', 'qr_poster', 'app', 'website', 'online_order', 'crm_import', 'manual')),
    outcome     text NOT NULL CHECK (outcome IN ('created', 'existing', 'attached', 'merged')),
    store       text CHECK (store ~ '^[A-Za-z0-9_.-]{1,64}$'),
    terminal    text CHECK (terminal ~ '^[A-Za-z0-9_.-]{1,64}$'),
    api_key_id  text REFERENCES api_keys (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registrations_customer ON registrations (customer_id);
CREATE INDEX registrations_source_time ON registrations (source, created_at);
