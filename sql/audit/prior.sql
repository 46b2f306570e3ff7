-- Before the apply: the prior values the diff rows do not carry but an undo needs (a
-- reactivated or deactivated user's deactivated_at, a user's manager_id), kept for
-- audit/record. Statements end with a semicolon at line end (rules.run_script).
DROP TABLE IF EXISTS pg_temp.sp_prior;
CREATE TEMP TABLE sp_prior ON COMMIT DROP AS
SELECT d.entity, d.action, d.key, u.deactivated_at, u.manager_id
FROM sync.diffs d
JOIN app.users u ON u.tenant = :tenant AND u.id = d.app_id
WHERE d.tenant = :tenant AND d.run_id = :run_id
  AND (d.entity = 'manager' OR (d.entity = 'user' AND d.action IN ('reactivate', 'deactivate')));
CREATE UNIQUE INDEX ON sp_prior (entity, action, key)
