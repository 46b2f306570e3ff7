-- When the check last validated the tenant whole; whether the staged change set since the
-- last transform includes a full read (sync.touched kind 'full', migration 014); and which
-- path built the snapshot last.
SELECT
    (SELECT v.verified_at FROM sync.verifications v
     WHERE v.tenant = :tenant AND v.check_name = :check_name) AS verified_at,
    EXISTS (SELECT 1 FROM sync.touched t WHERE t.tenant = :tenant AND t.kind = 'full')
        AS full_read,
    (SELECT s.path FROM sync.snapshot_state s WHERE s.tenant = :tenant) AS snapshot_path
