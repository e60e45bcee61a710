-- Who did it, for registrations staff make by hand (a no-name card attached by support in the console
-- or the admin API): 'staff:<id>' or 'api_key:<id>', as ledger entries record their actor.
ALTER TABLE registrations ADD COLUMN actor text CHECK (length(actor) BETWEEN 1 AND 200);

-- A shopper's file lists the no-name cards merged into the account: find them by the account they went to.
CREATE INDEX customers_merged_into ON customers (merged_into) WHERE merged_into IS NOT NULL;
