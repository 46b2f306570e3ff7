-- What the tenant's snapshot was last built from, beside its row counts now.
SELECT
    s.fingerprint,
    s.users = (SELECT count(*) FROM sync.snapshot_users u WHERE u.tenant = :tenant)
    AND s.groups = (SELECT count(*) FROM sync.snapshot_groups g WHERE g.tenant = :tenant)
    AND s.memberships
        = (SELECT count(*) FROM sync.snapshot_memberships m WHERE m.tenant = :tenant)
      AS counts_match
FROM sync.snapshot_state s
WHERE s.tenant = :tenant
