-- How this run's diff was computed (sync.diff_plans), for its apply and its metadata.
INSERT INTO sync.diff_plans
    (run_id, tenant, path, full_reason, fingerprint, unreadable, users_considered)
VALUES (:run_id, :tenant, :path, :full_reason, :fingerprint, :unreadable, :users_considered)
ON CONFLICT (run_id) DO UPDATE SET
    path = excluded.path, full_reason = excluded.full_reason,
    fingerprint = excluded.fingerprint, unreadable = excluded.unreadable,
    users_considered = excluded.users_considered
