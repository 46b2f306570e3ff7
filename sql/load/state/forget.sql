-- The tenant's diff state is not to be trusted: its next diff is computed whole.
DELETE FROM sync.diff_state WHERE tenant = :tenant
