-- Park the current address of every active user whose address this run changes to another
-- one (not merely its case), so that the update step can hand addresses around — a swap, a
-- rotation — without two active users holding one address at any moment (the app's unique
-- index users_active_email is checked row by row, not at the end of the statement). The
-- parked value is unique per row and never seen outside the transaction; the update step
-- sets every parked address to its new value, and the audit records the diff's before/after.
UPDATE app.users u
SET email = 'sync-pipeline-parked-' || u.id || '@invalid'
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user'
  AND d.action IN ('update', 'reactivate') AND d.after ? 'email'
  AND u.tenant = :tenant AND u.id = d.app_id AND u.is_active
  AND lower(u.email) <> lower(d.after ->> 'email')
