-- New users, managed by the sync from now on, with their direct manager when the plan sets
-- one (a `manager` row of a user without an app id is one of this run's creates): the ids
-- are taken from the table's own sequence first, so that a new user can point at a manager
-- created in the same statement (the foreign key is checked at the statement's end). A
-- first load thus writes each user once, instead of inserting it and then updating its
-- manager_id (a second version of 90k rows, and of their index entries).
-- load/apply_manager_set sets the managers of the users that existed before this run.
-- The rows this run created are not in the planner's statistics yet (see
-- load/apply_manager_set); hash joins. Statements end with a semicolon at line end.
SET LOCAL enable_nestloop = off;
WITH n AS MATERIALIZED (
    SELECT nextval(CAST(pg_get_serial_sequence('app.users', 'id') AS regclass)) AS id,
           d.key, d.after, m.after ->> 'manager_external_id' AS manager_key
    FROM sync.diffs d
    LEFT JOIN sync.diffs m
      ON m.tenant = :tenant AND m.run_id = :run_id AND m.entity = 'manager'
     AND m.action = 'set' AND m.key = d.key
    WHERE d.tenant = :tenant AND d.run_id = :run_id AND d.entity = 'user' AND d.action = 'create'
)
INSERT INTO app.users (
    id, tenant, external_id, email, display_name, first_name, last_name, job_title,
    department, manager_id, is_active, source)
SELECT
    n.id, :tenant, n.key, n.after ->> 'email', n.after ->> 'display_name',
    n.after ->> 'first_name', n.after ->> 'last_name', n.after ->> 'job_title',
    n.after ->> 'department', coalesce(nm.id, em.id), true, 'm365'
FROM n
LEFT JOIN n nm ON nm.key = n.manager_key
LEFT JOIN app.users em
  ON n.manager_key IS NOT NULL AND em.tenant = :tenant AND em.external_id = n.manager_key
ORDER BY n.id;
SET LOCAL enable_nestloop TO DEFAULT
