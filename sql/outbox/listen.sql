-- A consumer's subscription to the outbox's commits (sync_pipeline/outbox/events.py CHANNEL;
-- a channel is a name, not a bindable value).
LISTEN sync_pipeline_events
