-- A tenant's applied changes, newest first: optionally one run's, or one person's (by the
-- address the app holds now or any address a change recorded; memberships and managers too).
SELECT c.id, c.run_id, r.undo_of, c.entity, c.action, c.key, c.label, c.before, c.after,
       c.applied_at
FROM sync.changes c
JOIN sync.runs r ON r.id = c.run_id AND r.tenant = :tenant
WHERE c.tenant = :tenant
  AND (CAST(:run_id AS bigint) IS NULL OR c.run_id = CAST(:run_id AS bigint))
  AND (CAST(:email AS text) IS NULL
       OR c.user_id IN (
           SELECT u.id FROM app.users u
           WHERE u.tenant = :tenant AND lower(u.email) = lower(CAST(:email AS text)))
       OR lower(c.before ->> 'email') = lower(CAST(:email AS text))
       OR lower(c.after ->> 'email') = lower(CAST(:email AS text)))
ORDER BY c.applied_at DESC, c.id DESC
LIMIT :limit
