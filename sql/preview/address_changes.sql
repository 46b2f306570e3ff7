-- How many active users of a (preview) run's diff get another address.
SELECT count(*)
FROM sync.diffs
WHERE tenant = :tenant AND run_id = :run_id AND entity = 'user' AND action = 'update'
  AND after -> 'email' IS NOT NULL
