-- update | adopt | reactivate (the action parameter): set exactly the fields the diff row's `after` carries.
UPDATE app.users u
SET email = CASE WHEN d.after ? 'email' THEN d.after ->> 'email' ELSE u.email END,
    display_name = CASE WHEN d.after ? 'display_name' THEN d.after ->> 'display_name'
                        ELSE u.display_name END,
    first_name = CASE WHEN d.after ? 'first_name' THEN d.after ->> 'first_name'
                      ELSE u.first_name END,
    last_name = CASE WHEN d.after ? 'last_name' THEN d.after ->> 'last_name' ELSE u.last_name END,
    job_title = CASE WHEN d.after ? 'job_title' THEN d.after ->> 'job_title' ELSE u.job_title END,
    department = CASE WHEN d.after ? 'department' THEN d.after ->> 'department'
                      ELSE u.department END,
    external_id = CASE WHEN d.after ? 'external_id' THEN d.after ->> 'external_id'
                       ELSE u.external_id END,
    source = coalesce(d.after ->> 'source', u.source),
    is_active = coalesce(CAST(d.after ->> 'is_active' AS boolean), u.is_active),
    deactivated_at = CASE WHEN d.after ->> 'is_active' = 'true' THEN NULL
                          ELSE u.deactivated_at END,
    updated_at = now()
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user' AND d.action = :action
  AND u.tenant = :tenant AND u.id = d.app_id
