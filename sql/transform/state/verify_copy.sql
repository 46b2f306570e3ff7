-- A whole verification (rules.refresh_snapshot, verify): the tenant's snapshot as the
-- incremental path left it, set aside before the full path rebuilds it.
-- Statements end with a semicolon at the end of a line.
DROP TABLE IF EXISTS pg_temp.sp_verify_users;
CREATE TEMP TABLE sp_verify_users ON COMMIT DROP AS
SELECT graph_id, included, reason, reasons, email, display_name, first_name, last_name,
       job_title, department, manager_graph_id, manager_note
FROM sync.snapshot_users WHERE tenant = :tenant;
DROP TABLE IF EXISTS pg_temp.sp_verify_groups;
CREATE TEMP TABLE sp_verify_groups ON COMMIT DROP AS
SELECT graph_id, included, reason, name, group_kind, mapped_to
FROM sync.snapshot_groups WHERE tenant = :tenant;
DROP TABLE IF EXISTS pg_temp.sp_verify_memberships;
CREATE TEMP TABLE sp_verify_memberships ON COMMIT DROP AS
SELECT group_graph_id, user_graph_id
FROM sync.snapshot_memberships WHERE tenant = :tenant
