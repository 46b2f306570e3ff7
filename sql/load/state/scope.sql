-- The change set of the incremental diff (load/diff.py, migration 015): what sync.diff_dirty
-- holds for the tenant, remembered for this run (sync.diff_seen, consumed by its apply) and
-- turned into the users to diff again:
--   sp_scope_u, Graph user ids: every dirty user, every snapshot user at a dirty app address
--   (adoption), every snapshot member of a dirty app group, and every report of a dirty user
--   (the manager's address and id show in their manager rows); then the external ids of the
--   app users in sp_scope_a;
--   sp_scope_a, app user ids: every dirty app user, every member of a dirty app group, every
--   user with a withheld or decided change (load/gate.sql), and the app rows of the users in
--   sp_scope_u (diff.sql adds the adopted ones).
-- Every diff row is about one user, or about a group (groups are diffed whole), so the diff
-- of these users alone is the whole diff's rows for them; the others have none (the last
-- applied diff left them in line, and nothing they depend on moved since).
-- With :populate false (the diff is whole anyway) only the change set is remembered.
-- Statements end with a semicolon at the end of a line.
SET LOCAL enable_nestloop = on;
DELETE FROM sync.diff_seen WHERE tenant = :tenant;
INSERT INTO sync.diff_seen (run_id, tenant, kind, id, seq)
SELECT :run_id, d.tenant, d.kind, d.id, d.seq FROM sync.diff_dirty d WHERE d.tenant = :tenant;
DROP TABLE IF EXISTS pg_temp.sp_scope_u;
CREATE TEMP TABLE sp_scope_u (graph_id text PRIMARY KEY) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.sp_scope_a;
CREATE TEMP TABLE sp_scope_a (id bigint PRIMARY KEY) ON COMMIT DROP;
INSERT INTO sp_scope_u (graph_id)
SELECT e.id FROM sync.diff_seen e
WHERE CAST(:populate AS boolean) AND e.run_id = :run_id AND e.kind = 'user'
UNION
SELECT s.graph_id
FROM sync.diff_seen e
JOIN sync.snapshot_users s ON s.tenant = :tenant AND lower(s.email) = e.id
WHERE CAST(:populate AS boolean) AND e.run_id = :run_id AND e.kind = 'email'
UNION
SELECT m.user_graph_id
FROM sync.diff_seen e
JOIN sync.snapshot_memberships m ON m.tenant = :tenant AND m.group_graph_id = e.id
WHERE CAST(:populate AS boolean) AND e.run_id = :run_id AND e.kind = 'app_group_ext'
UNION
SELECT s.graph_id
FROM sync.diff_seen e
JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.manager_graph_id = e.id
WHERE CAST(:populate AS boolean) AND e.run_id = :run_id AND e.kind = 'user';
INSERT INTO sp_scope_a (id)
SELECT CAST(e.id AS bigint) FROM sync.diff_seen e
WHERE CAST(:populate AS boolean) AND e.run_id = :run_id AND e.kind = 'app_user'
UNION
SELECT gm.user_id
FROM sync.diff_seen e
JOIN app.group_members gm ON gm.tenant = :tenant AND gm.group_id = CAST(e.id AS bigint)
WHERE CAST(:populate AS boolean) AND e.run_id = :run_id AND e.kind = 'app_group'
UNION
-- the people with a change the gate withheld, or decided on (load/gate.sql): diffed again,
-- so that the gate sees whether the change still comes up
SELECT w.user_id FROM sync.withheld w
WHERE CAST(:populate AS boolean) AND w.tenant = :tenant AND w.user_id IS NOT NULL
UNION
SELECT dc.user_id FROM sync.decisions dc
WHERE CAST(:populate AS boolean) AND dc.tenant = :tenant AND dc.user_id IS NOT NULL;
-- a withheld change of a user not in the app yet (a create waiting for its address) has no
-- app id: by its Graph id
INSERT INTO sp_scope_u (graph_id)
SELECT w.key FROM sync.withheld w
WHERE CAST(:populate AS boolean) AND w.tenant = :tenant
  AND w.kind IN ('create', 'update', 'reactivate', 'deactivate', 'manager')
ON CONFLICT DO NOTHING;
INSERT INTO sp_scope_u (graph_id)
SELECT u.external_id
FROM sp_scope_a a
JOIN app.users u ON u.id = a.id AND u.tenant = :tenant
WHERE u.external_id IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO sp_scope_a (id)
SELECT u.id
FROM sp_scope_u s
JOIN app.users u ON u.tenant = :tenant AND u.external_id = s.graph_id
ON CONFLICT DO NOTHING;
ANALYZE sp_scope_u;
ANALYZE sp_scope_a
