-- A card's pass can be re-issued: rotating the card-page link retires the pass handed out through the
-- old link (it goes void on the phones that hold it and shows nothing of the account any more) and the
-- next download makes a new pass with a new serial and a new authentication token. So a pass names its
-- card in a column of its own; the serial of a card's first pass stays the card number.

ALTER TABLE passes ADD COLUMN card_number text REFERENCES cards (number);
UPDATE passes SET card_number = serial_number;
ALTER TABLE passes ALTER COLUMN card_number SET NOT NULL;
ALTER TABLE passes DROP CONSTRAINT passes_serial_number_fkey;
ALTER TABLE passes ADD CONSTRAINT passes_serial_number_check
    CHECK (serial_number ~ '^[A-Za-z0-9_-]{1,64}$');
-- When the pass was retired by a link rotation; a retired pass is never updated again.
ALTER TABLE passes ADD COLUMN retired_at timestamptz;
-- One live pass per card: the one the card page and the app hand out.
CREATE UNIQUE INDEX passes_live_card ON passes (card_number) WHERE retired_at IS NULL;
