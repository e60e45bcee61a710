-- Wallet passes: the Apple pass of each card that has one (its authentication token, fixed for the
-- serial's life, and its update tag), the devices that registered it through the PassKit web
-- service, whether a Google Wallet save link was handed out, and store locations for relevance.

-- Update tags: a sequence, so every change anywhere gets a tag larger than any before it.
CREATE SEQUENCE pass_update_tags;

CREATE TABLE passes (
    -- The serial number is the card number: a replaced card's pass stays voided under its old serial.
    serial_number        text PRIMARY KEY REFERENCES cards (number),
    authentication_token text NOT NULL CHECK (authentication_token ~ '^[A-Za-z0-9_-]{32,64}$'),
    update_tag           bigint NOT NULL DEFAULT nextval('pass_update_tags'),
    -- What Last-Modified says; moved with the tag whenever something the pass shows changes.
    updated_at           timestamptz NOT NULL,
    created_at           timestamptz NOT NULL,
    -- A Google Wallet save link was given out: keep that card's Google object up to date from then on.
    google_linked_at     timestamptz
);

CREATE TABLE pass_devices (
    device_library_id text PRIMARY KEY CHECK (device_library_id ~ '^[A-Za-z0-9._-]{1,128}$'),
    push_token        text NOT NULL CHECK (push_token ~ '^[0-9A-Fa-f]{16,200}$'),
    updated_at        timestamptz NOT NULL
);
CREATE INDEX pass_devices_push_token ON pass_devices (push_token);

CREATE TABLE pass_registrations (
    device_library_id text NOT NULL REFERENCES pass_devices (device_library_id) ON DELETE CASCADE,
    serial_number     text NOT NULL REFERENCES passes (serial_number),
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (device_library_id, serial_number)
);
CREATE INDEX pass_registrations_serial ON pass_registrations (serial_number);

-- The availability job wakes passes whose points became available (lots_due, on expires_at, serves
-- the points that enter "expiring soon").
CREATE INDEX lots_available_at ON lots (available_at) WHERE remaining > 0;
-- ...and those whose purchases leave the tier window (the progress to the next tier moves).
CREATE INDEX orders_purchased_at ON orders (purchased_at);

-- Where a job that runs on every tick (not once a day) got to.
CREATE TABLE job_marks (
    job     text PRIMARY KEY,
    reached timestamptz NOT NULL
);

-- Store locations, shown on passes as places where the card comes up on the lock screen.
ALTER TABLE stores ADD COLUMN latitude numeric(8, 6) CHECK (latitude BETWEEN -90 AND 90);
ALTER TABLE stores ADD COLUMN longitude numeric(9, 6) CHECK (longitude BETWEEN -180 AND 180);
ALTER TABLE stores ADD CONSTRAINT stores_location_whole CHECK ((latitude IS NULL) = (longitude IS NULL));
