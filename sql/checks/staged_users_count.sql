-- The tenant's staged users, as the staging triggers count them (sync.staged_rows, migration
-- 017): the row-count check of a daily check, which validates only the changed rows (a whole
-- check counts the rows themselves).
SELECT coalesce((SELECT n FROM sync.staged_rows WHERE tenant = :tenant AND tbl = 'users'), 0)
