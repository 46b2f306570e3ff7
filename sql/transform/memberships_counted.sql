-- The snapshot's memberships after the incremental path: the count recorded at the last build
-- (exact, and trusted: no one else wrote the snapshot since, migration 017) and the pairs
-- inc_memberships.sql just removed and added.
SELECT CAST(:previous AS bigint)
       + (SELECT count(*) FROM sp_new_memberships)
       - (SELECT count(*) FROM sp_gone_memberships)
