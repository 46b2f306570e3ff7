-- Announce a commit's events (sync_pipeline/outbox/events.py CHANNEL); Postgres delivers the
-- notification when the transaction commits, and never when it rolls back.
SELECT pg_notify(:channel, :message)
