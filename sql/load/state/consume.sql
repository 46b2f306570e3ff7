-- After the apply of run_id's diff, in its transaction: the keys that diff read are in line
-- now; the ones written again since (a new seq) stay dirty. The tenant's diff state becomes
-- the plan's. Nothing happens for a run with no plan (a crash emptied it): keys stay dirty.
-- Statements end with a semicolon at the end of a line.
DELETE FROM sync.diff_dirty d
USING sync.diff_seen s
WHERE s.run_id = :run_id AND s.tenant = :tenant
  AND d.tenant = :tenant AND d.kind = s.kind AND d.id = s.id AND d.seq = s.seq;
INSERT INTO sync.diff_state (tenant, fingerprint, unreadable, run_id, applied_at)
SELECT p.tenant, p.fingerprint, p.unreadable, p.run_id, now()
FROM sync.diff_plans p
WHERE p.run_id = :run_id AND p.tenant = :tenant
ON CONFLICT (tenant) DO UPDATE SET
    fingerprint = excluded.fingerprint, unreadable = excluded.unreadable,
    run_id = excluded.run_id, applied_at = excluded.applied_at;
DELETE FROM sync.diff_seen WHERE tenant = :tenant;
DELETE FROM sync.diff_plans WHERE tenant = :tenant AND run_id < :run_id
