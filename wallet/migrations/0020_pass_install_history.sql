-- Wallet-pass install history (issue 15, specs/analytics.md "Wallet-pass installs"): what phones did
-- with passes is kept, not deleted, so "wallet adoption" and "passes removed" are true figures.

-- Apple: an unregistration (the phone removed the pass) or an APNs 410 (the device's push token is
-- dead) marks the registration removed instead of deleting it. A device that registers the pass again
-- gets a new row; at most one row per device and pass is live.
ALTER TABLE pass_registrations ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE pass_registrations DROP CONSTRAINT pass_registrations_pkey;
ALTER TABLE pass_registrations ADD PRIMARY KEY (id);
ALTER TABLE pass_registrations ADD COLUMN removed_at timestamptz;
-- 'device': the phone unregistered (the shopper removed the pass); 'apns': APNs answered 410.
ALTER TABLE pass_registrations ADD COLUMN removed_by text CHECK (removed_by IN ('device', 'apns'));
ALTER TABLE pass_registrations ADD CONSTRAINT pass_registrations_removed_whole
    CHECK ((removed_at IS NULL) = (removed_by IS NULL) AND (removed_at IS NULL OR removed_at >= created_at));
CREATE UNIQUE INDEX pass_registrations_live ON pass_registrations (device_library_id, serial_number)
    WHERE removed_at IS NULL;
-- Devices are no longer deleted (their registrations are history), so nothing cascades.
ALTER TABLE pass_registrations DROP CONSTRAINT pass_registrations_device_library_id_fkey;
ALTER TABLE pass_registrations ADD CONSTRAINT pass_registrations_device_library_id_fkey
    FOREIGN KEY (device_library_id) REFERENCES pass_devices (device_library_id);
-- Installs and removals over a period.
CREATE INDEX pass_registrations_created ON pass_registrations (created_at);
CREATE INDEX pass_registrations_removed ON pass_registrations (removed_at) WHERE removed_at IS NOT NULL;

-- Google: the save / delete callbacks Google signs (POST /v1/webhooks/google-wallet), one row per
-- event. Google may deliver an event more than once: its nonce makes the second delivery a no-op.
CREATE TABLE google_wallet_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nonce         text NOT NULL UNIQUE CHECK (length(nonce) BETWEEN 1 AND 200),
    event_type    text NOT NULL CHECK (event_type IN ('save', 'del')),
    class_id      text NOT NULL CHECK (length(class_id) <= 300),
    object_id     text NOT NULL CHECK (length(object_id) <= 300),
    -- The pass the object is (NULL for an object of this issuer that Kartka does not know).
    serial_number text REFERENCES passes (serial_number),
    received_at   timestamptz NOT NULL
);
CREATE INDEX google_wallet_events_serial ON google_wallet_events (serial_number, received_at, id);
CREATE INDEX google_wallet_events_received ON google_wallet_events (received_at);
