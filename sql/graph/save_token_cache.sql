INSERT INTO sync.token_caches (tenant, account, cache, updated_at)
VALUES (:t, :account, :cache, now())
ON CONFLICT (tenant) DO UPDATE
SET account = coalesce(excluded.account, sync.token_caches.account),
    cache = excluded.cache, updated_at = excluded.updated_at
