-- The tenant's staged memberships, as the staging triggers count them (sync.staged_rows,
-- migration 017); a whole check counts the rows themselves.
SELECT coalesce((SELECT n FROM sync.staged_rows WHERE tenant = :tenant AND tbl = 'group_members'), 0)
