-- `sync --user` (load/diff.py): the change set is the one person, whatever else is dirty.
-- sync.diff_seen is left alone: a run of one person consumes no key (its apply leaves every
-- dirty key for the next sync's diff, which finds the person in line and diffs the rest).
-- Statements end with a semicolon at the end of a line.
DROP TABLE IF EXISTS pg_temp.sp_scope_u;
CREATE TEMP TABLE sp_scope_u (graph_id text PRIMARY KEY) ON COMMIT DROP;
DROP TABLE IF EXISTS pg_temp.sp_scope_a;
CREATE TEMP TABLE sp_scope_a (id bigint PRIMARY KEY) ON COMMIT DROP;
INSERT INTO sp_scope_u (graph_id) VALUES (:person);
INSERT INTO sp_scope_a (id)
SELECT u.id FROM app.users u WHERE u.tenant = :tenant AND u.external_id = :person;
ANALYZE sp_scope_u;
ANALYZE sp_scope_a
