-- Store managers: a staff role that sees the numbers of the stores assigned to it and of no other.
-- Stores are the wallet's (kartka/ knows no wallet tables), so a store is named by its code here, with no
-- foreign key; an admin assigns only stores that exist (kartka.staff.assign_stores checks the list the
-- caller read). Removing a staff account removes its assignments.

ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check CHECK (role IN ('admin', 'marketer', 'support', 'store_manager'));

CREATE TABLE staff_stores (
    staff_id uuid NOT NULL REFERENCES staff (id) ON DELETE CASCADE,
    store    text NOT NULL CHECK (length(store) BETWEEN 1 AND 64),
    PRIMARY KEY (staff_id, store)
);
