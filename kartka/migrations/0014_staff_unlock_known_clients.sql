-- Staff sign-in limits a stranger cannot turn into a lock-out. Failures are counted per account and
-- client address (in rate_events); an admin's unlock sets unlocked_at, and failures before it stop
-- counting. Addresses an account signed in from are remembered (as keyed hashes, like rate_events
-- buckets: no addresses are stored) and are not held to the per-account limit, so guessing spread
-- over many addresses does not shut the staff member out of their usual one.

ALTER TABLE staff ADD COLUMN unlocked_at timestamptz;

CREATE TABLE staff_known_clients (
    staff_id        uuid NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    client          bytea NOT NULL CHECK (octet_length(client) = 16),
    last_success_at timestamptz NOT NULL,
    PRIMARY KEY (staff_id, client)
);
