-- Campaigns aimed at a saved segment, and a held-out control group: recipients whose hash falls in
-- the first control_share_bp of 10,000 are recorded here instead of being sent the message, so the
-- campaign report can compare their purchases with those of the people who got it.

ALTER TABLE campaigns ADD COLUMN segment_id text;
ALTER TABLE campaigns ADD COLUMN control_share_bp integer NOT NULL DEFAULT 0
    CHECK (control_share_bp BETWEEN 0 AND 5000);
ALTER TABLE campaigns ADD COLUMN held_out integer NOT NULL DEFAULT 0;

CREATE TABLE campaign_holdouts (
    campaign_id bigint NOT NULL REFERENCES campaigns (id),
    customer_id uuid NOT NULL REFERENCES customers (id),
    PRIMARY KEY (campaign_id, customer_id)
);
