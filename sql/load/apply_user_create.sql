-- New users, managed by the sync from now on.
INSERT INTO app.users (
    tenant, external_id, email, display_name, first_name, last_name, job_title, department,
    is_active, source)
SELECT
    :tenant, d.key, d.after ->> 'email', d.after ->> 'display_name', d.after ->> 'first_name',
    d.after ->> 'last_name', d.after ->> 'job_title', d.after ->> 'department', true, 'm365'
FROM sync.diffs d
WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user' AND d.action = 'create'
