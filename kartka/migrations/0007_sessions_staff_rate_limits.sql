-- Sign-in sessions (a refresh-token family each) of shoppers and staff, staff accounts, and the event
-- log behind per-client rate limits. Subjects are referred to by kind and id, not by foreign key:
-- kartka/ is shared infrastructure and knows no wallet tables; closing an account revokes its
-- sessions explicitly.

CREATE TABLE staff (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username            text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{1,63}$'),
    role                text NOT NULL CHECK (role IN ('admin', 'marketer', 'support')),
    -- argon2id in PHC format ($argon2id$v=19$m=...,t=...,p=...$salt$hash), never the password.
    password_hash       text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz,
    disabled_at         timestamptz
);

CREATE TABLE auth_sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_kind  text NOT NULL CHECK (subject_kind IN ('customer', 'staff')),
    subject_id    uuid NOT NULL,
    created_at    timestamptz NOT NULL,
    refreshed_at  timestamptz,
    -- When the newest refresh token of the family lapses: the session ends then unless refreshed.
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text CHECK (length(revoke_reason) <= 200)
);
CREATE INDEX auth_sessions_subject ON auth_sessions (subject_kind, subject_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_sessions_expiry ON auth_sessions (expires_at);

-- Refresh tokens are 256-bit random; only their SHA-256 is kept. Each is spent on use (rotation);
-- presenting a spent one again means it leaked, and the whole session is revoked.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- One row per counted request; a bucket is a keyed hash of what is limited (a phone, an address,
-- a username), so the table holds no personal data. Old rows are deleted by the worker's jobs.
CREATE TABLE rate_events (
    bucket bytea NOT NULL CHECK (octet_length(bucket) = 16),
    at     timestamptz NOT NULL
);
CREATE INDEX rate_events_bucket_time ON rate_events (bucket, at);
