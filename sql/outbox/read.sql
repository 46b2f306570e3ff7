-- A consumer's cursor: the tenant's events after :after, oldest first.
SELECT id, tenant, type, run_id, user_id, group_id, external_id, created_at, payload
FROM sync.events
WHERE tenant = :tenant AND id > :after
ORDER BY id
LIMIT :limit
