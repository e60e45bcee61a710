-- Keys for tills, integrations and admin tools. Only a SHA-256 of the key is stored: keys are 256-bit
-- random, so a fast hash is as strong as a slow one and keeps the per-request check cheap.
CREATE TABLE api_keys (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    key_hash    bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    scope       text NOT NULL CHECK (scope IN ('pos', 'integration', 'admin')),
    store       text CHECK (store ~ '^[A-Za-z0-9_.-]{1,64}$'),
    terminal    text CHECK (terminal ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK (scope <> 'pos' OR (store IS NOT NULL AND terminal IS NOT NULL)),
    CHECK (terminal IS NULL OR store IS NOT NULL)
);
