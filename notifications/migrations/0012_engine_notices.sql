-- The outbox carries the remote core engine's notices of committed orders and refunds too ('engine'):
-- written in the transaction of the order or refund, sent after it commits, retried until the engine
-- acknowledges (wallet/pricing/http.py, notifications/providers/engine.py, docs/engine-contract.md).
ALTER TABLE outbox DROP CONSTRAINT outbox_channel_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_channel_check
    CHECK (channel IN ('sms', 'viber', 'apns', 'fcm', 'passkit', 'gwallet', 'engine'));
