-- Card activation per issue day (local), store and source of the registration that issued the card:
-- cards issued, and of them those whose account bought within 30 days. Rolled up like the receipt days
-- (a day's row is recomputed whole; a purchase marks the issue days of its customer's last 31 days).
CREATE TABLE kpi_card_days (
    day       date NOT NULL,
    store     text NOT NULL,
    source    text NOT NULL,
    issued    integer NOT NULL CHECK (issued > 0),
    activated integer NOT NULL CHECK (activated BETWEEN 0 AND issued),
    PRIMARY KEY (day, store, source)
);
