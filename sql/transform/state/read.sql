-- What the tenant's snapshot was last built from, whether anyone but the transform wrote it
-- since (migration 017), and its memberships then (the incremental path counts on from there).
SELECT s.fingerprint, NOT s.written_outside AS counts_match, s.memberships
FROM sync.snapshot_state s
WHERE s.tenant = :tenant
