-- The tenant's snapshot state is not to be trusted: the next transform rebuilds in full.
DELETE FROM sync.snapshot_state WHERE tenant = :tenant
