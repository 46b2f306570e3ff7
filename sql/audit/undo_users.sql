-- Users back to their values before run :undo_of (deactivating ones first when :deactivating,
-- so the active-address unique index never sees two active rows), each change recorded.
WITH upd AS (
    UPDATE app.users u
    SET email = CASE WHEN x.target ? 'email' THEN x.target ->> 'email' ELSE u.email END,
        display_name = CASE WHEN x.target ? 'display_name' THEN x.target ->> 'display_name'
                            ELSE u.display_name END,
        first_name = CASE WHEN x.target ? 'first_name' THEN x.target ->> 'first_name'
                          ELSE u.first_name END,
        last_name = CASE WHEN x.target ? 'last_name' THEN x.target ->> 'last_name'
                         ELSE u.last_name END,
        job_title = CASE WHEN x.target ? 'job_title' THEN x.target ->> 'job_title'
                         ELSE u.job_title END,
        department = CASE WHEN x.target ? 'department' THEN x.target ->> 'department'
                          ELSE u.department END,
        external_id = CASE WHEN x.target ? 'external_id' THEN x.target ->> 'external_id'
                           ELSE u.external_id END,
        source = CASE WHEN x.target ? 'source' THEN x.target ->> 'source' ELSE u.source END,
        is_active = CASE WHEN x.target ? 'is_active'
                         THEN CAST(x.target ->> 'is_active' AS boolean) ELSE u.is_active END,
        deactivated_at = CASE WHEN x.target ? 'deactivated_at'
                              THEN CAST(x.target ->> 'deactivated_at' AS timestamptz)
                              ELSE u.deactivated_at END,
        manager_id = CASE WHEN x.target ? 'manager_id'
                          THEN CAST(x.target ->> 'manager_id' AS bigint) ELSE u.manager_id END,
        updated_at = now()
    FROM sp_undo_users x
    WHERE u.tenant = :tenant AND u.id = x.user_id
      AND coalesce(x.target ->> 'is_active' = 'false', false) = CAST(:deactivating AS boolean)
    RETURNING u.id, to_jsonb(u) AS row
)
INSERT INTO sync.changes (tenant, run_id, entity, action, key, label, user_id, before, after)
SELECT :tenant, :run_id, 'user', CASE WHEN x.created THEN 'deactivate' ELSE 'revert' END,
       coalesce(upd.row ->> 'external_id', 'app:' || upd.id), upd.row ->> 'email', upd.id,
       x.cur,
       (SELECT jsonb_object_agg(k, upd.row -> k) FROM jsonb_object_keys(x.target) k)
FROM upd
JOIN sp_undo_users x ON x.user_id = upd.id
