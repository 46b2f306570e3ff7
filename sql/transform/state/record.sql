-- What the tenant's snapshot was just built from, by which path, and its row counts; the
-- transform's own writes leave it trusted (migration 017).
INSERT INTO sync.snapshot_state (tenant, fingerprint, users, groups, memberships, built_at, path)
VALUES (:tenant, :fingerprint, :users, :groups, :memberships, now(), :path)
ON CONFLICT (tenant) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, users = EXCLUDED.users, groups = EXCLUDED.groups,
    memberships = EXCLUDED.memberships, built_at = EXCLUDED.built_at, path = EXCLUDED.path,
    written_outside = false
