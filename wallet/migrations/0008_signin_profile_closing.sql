-- Phone sign-in codes, the profile fields shoppers edit in the app, and closing an account.

-- One live code per phone: a new send replaces the old one. Only a keyed hash of the code is kept;
-- the row goes when the code is used, expires or has been guessed wrong too often.
CREATE TABLE signin_codes (
    phone      text PRIMARY KEY CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    code_hash  bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    sent_at    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    CHECK (expires_at > sent_at)
);
CREATE INDEX signin_codes_expiry ON signin_codes (expires_at);

ALTER TABLE customers ADD COLUMN birthday date CHECK (birthday >= date '1900-01-01');
-- When the birthday was last set: one set the day before does not bring that year's bonus.
ALTER TABLE customers ADD COLUMN birthday_set_at timestamptz;
-- A closed account keeps its id, orders and ledger (the books stay whole) and loses everything that
-- names a person.
ALTER TABLE customers ADD COLUMN closed_at timestamptz;
ALTER TABLE customers ADD CONSTRAINT customers_closed_anonymous
    CHECK (closed_at IS NULL OR (phone IS NULL AND name IS NULL AND email IS NULL AND birthday IS NULL));
ALTER TABLE customers ADD CONSTRAINT customers_birthday_set CHECK ((birthday IS NULL) OR (birthday_set_at IS NOT NULL));
-- The birthday bonus job looks customers up by month and day.
CREATE INDEX customers_birthday ON customers (extract(month FROM birthday), extract(day FROM birthday))
    WHERE birthday IS NOT NULL;

ALTER TABLE cards DROP CONSTRAINT cards_status_check;
ALTER TABLE cards ADD CONSTRAINT cards_status_check CHECK (status IN ('active', 'blocked', 'replaced', 'closed'));

-- One birthday bonus per customer and calendar year, however often the job runs or the date changes.
CREATE TABLE birthday_bonuses (
    customer_id uuid NOT NULL REFERENCES customers (id),
    year        integer NOT NULL,
    granted_at  timestamptz NOT NULL,
    PRIMARY KEY (customer_id, year)
);

-- Closing an account erases the phone from the messages sent to it before it was a customer's (sign-in
-- codes carry no customer id): find those by recipient.
CREATE INDEX outbox_recipient_without_customer ON outbox (recipient) WHERE customer_id IS NULL;
