-- The transactional outbox and what decides its contents: preferences, app devices, campaigns.

CREATE TABLE notification_preferences (
    customer_id uuid PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    -- Channels in the shopper's order of preference: 'app' (push), 'viber', 'sms'.
    channels    text[] NOT NULL CHECK (channels <@ ARRAY['app', 'viber', 'sms'] AND cardinality(channels) >= 1),
    marketing   boolean NOT NULL DEFAULT false,
    -- Quiet hours for marketing, minutes after local midnight; NULL: the program's default.
    quiet_start smallint CHECK (quiet_start BETWEEN 0 AND 1439),
    quiet_end   smallint CHECK (quiet_end BETWEEN 0 AND 1439),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);
CREATE INDEX notification_preferences_marketing ON notification_preferences (customer_id) WHERE marketing;

CREATE TABLE devices (
    token        text PRIMARY KEY CHECK (length(token) BETWEEN 8 AND 4096),
    customer_id  uuid NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    platform     text NOT NULL CHECK (platform IN ('ios', 'android')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_customer ON devices (customer_id);

CREATE TABLE campaigns (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    texts           jsonb NOT NULL,  -- {"ru": "...", "en": "..."}
    channels        text[] NOT NULL CHECK (channels <@ ARRAY['viber', 'sms'] AND cardinality(channels) >= 1),
    segment         jsonb NOT NULL,
    rate_per_minute integer CHECK (rate_per_minute > 0),
    start_at        timestamptz NOT NULL,
    -- Enqueued by the worker in chunks of customers in id order; the cursor makes it resumable.
    status          text NOT NULL DEFAULT 'enqueuing' CHECK (status IN ('enqueuing', 'enqueued')),
    cursor_id       uuid,
    recipients      integer NOT NULL DEFAULT 0,
    enqueued_at     timestamptz,
    idempotency_key text UNIQUE,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A producer's retry (or a second run of a job) never doubles a message.
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    customer_id     uuid REFERENCES customers (id) ON DELETE CASCADE,
    campaign_id     bigint REFERENCES campaigns (id),
    channel         text NOT NULL CHECK (channel IN ('sms', 'viber', 'apns', 'fcm')),
    recipient       text NOT NULL,
    category        text NOT NULL CHECK (category IN ('transactional', 'marketing')),
    template        text NOT NULL,
    locale          text NOT NULL CHECK (locale IN ('ru', 'en')),
    params          jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'dead', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    due_at          timestamptz NOT NULL,
    lease_until     timestamptz,
    worker          text,
    provider        text,
    provider_message_id text,
    last_error      text,
    -- Viber: when to send the SMS instead if no delivery receipt came; NULL once settled.
    fallback_at     timestamptz,
    fallback_of     bigint REFERENCES outbox (id),
    -- Marketing: quiet hours in the shopper's store's time zone (minutes after local midnight).
    quiet_tz        text,
    quiet_start     smallint,
    quiet_end       smallint,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    delivered_at    timestamptz,
    updated_at      timestamptz
);
-- The worker's queue: due rows in order; expired leases of dead workers; Viber fallbacks.
CREATE INDEX outbox_due ON outbox (due_at) WHERE status = 'queued';
CREATE INDEX outbox_leases ON outbox (lease_until) WHERE status = 'sending';
CREATE INDEX outbox_fallbacks ON outbox (fallback_at) WHERE fallback_at IS NOT NULL;
-- Delivery receipts find their message by the provider's id.
CREATE INDEX outbox_provider_message ON outbox (provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX outbox_campaign ON outbox (campaign_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX outbox_customer ON outbox (customer_id, created_at);

-- Lots a "points expiring soon" reminder went out for: one reminder per lot.
CREATE TABLE expiry_reminders (
    lot_id      bigint PRIMARY KEY REFERENCES lots (id),
    reminded_at timestamptz NOT NULL
);

-- What the development provider "sent": read at GET /dev/inbox. Never used in production.
CREATE TABLE dev_inbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    channel         text NOT NULL,
    recipient       text NOT NULL,
    title           text,
    body            text NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dev_inbox_recipient ON dev_inbox (recipient, id DESC);
