-- The outbox carries wallet pass updates too: an empty APNs push per registered device ('passkit')
-- and a PATCH of the card's Google Wallet object ('gwallet').
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check
    CHECK (channel IN ('sms', 'viber', 'apns', 'fcm', 'passkit', 'gwallet'));
