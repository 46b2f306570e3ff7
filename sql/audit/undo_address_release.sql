-- Park the address of every active user the undo gives another address back (not merely
-- another case), so that users trading addresses back never hold one at once (see
-- load/apply_address_release). undo_users sets every parked address; the audit records the
-- values from sp_undo_users, never the parked one.
UPDATE app.users u
SET email = 'sync-pipeline-parked-' || u.id || '@invalid'
FROM sp_undo_users x
WHERE u.tenant = :tenant AND u.id = x.user_id AND u.is_active AND x.target ? 'email'
  AND lower(u.email) <> lower(x.target ->> 'email')
