-- When each tenant's directory was last read in full (users and groups in one extraction:
-- the first read, a `sync --full`, the schedule's periodic full read, or a delta token
-- Graph no longer knew). The schedule turns a tenant's daily sync into a full read once the
-- last one is `full_read_every_days` old (registry/fullreads.py). Written in the
-- extraction's own transaction, so a failed read records nothing. Idempotent.
CREATE TABLE IF NOT EXISTS sync.full_reads (
    tenant  text PRIMARY KEY,
    read_at timestamptz NOT NULL DEFAULT now()
);
