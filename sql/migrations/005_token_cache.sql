-- Delegated sign-in: each tenant's msal token cache, encrypted (Fernet, SYNC_PIPELINE_SECRET_KEY).
-- The plaintext never reaches the database; `account` is the signed-in address, not a secret.
CREATE TABLE IF NOT EXISTS sync.token_caches (
    tenant     text PRIMARY KEY,
    account    text,
    cache      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
