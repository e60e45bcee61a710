-- Wallet protocols, to the letter.

-- APNs push tokens: Apple promises no length (today 64 hex digits). Accept up to 2,048 hex digits,
-- which a btree index entry still holds (pass_devices_push_token, the outbox's recipient index).
ALTER TABLE pass_devices DROP CONSTRAINT pass_devices_push_token_check;
ALTER TABLE pass_devices ADD CONSTRAINT pass_devices_push_token_check
    CHECK (push_token ~ '^[0-9A-Fa-f]+$' AND length(push_token) BETWEEN 16 AND 2048);  -- regex counts stop at 255

-- Google Wallet: a save link names a class and an object inserted through the REST API beforehand
-- (a link carrying them whole is too long for messengers and mail clients to keep).
-- The loyalty class as last sent to Google: sent again only when the program's class changes.
CREATE TABLE google_classes (
    class_id  text PRIMARY KEY,
    digest    text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),  -- SHA-256 of the class JSON sent
    synced_at timestamptz NOT NULL
);
-- When the card's loyalty object was inserted (or found and brought up to date): later save links
-- only name it, and its updates are PATCHes (passes.google_linked_at).
ALTER TABLE passes ADD COLUMN google_object_at timestamptz;
