-- The planned manager changes of the users this run created (no app id in the plan):
-- load/apply_user_create applied them with the users themselves.
SELECT count(*)
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'manager' AND d.action = 'set'
  AND d.app_id IS NULL
