-- Group nesting closure of one tenant, without its identity: (ancestor, descendant) for every
-- group reachable from a staged group through one or more nested groups. Most groups have no
-- nested group, so their only closure pair would be (g, g): the statements that use sp_closure
-- handle a group's own direct members themselves instead of joining through millions of
-- identity pairs. UNION (not UNION ALL) drops pairs already seen, so nesting cycles terminate;
-- a group in a cycle reaches itself, and that pair is dropped too (its direct members are
-- counted anyway). Statements are separated by a semicolon at the end of a line (run_script).
-- For this transaction only: JIT compiles these large one-off statements for longer than they
-- run (seconds at 100k users), and hash aggregates over millions of memberships want memory.
-- Nested loops are off until the end of memberships.sql: every statement here joins whole
-- tables, and right after a tenant's first sync the snapshot tables' statistics still say
-- "empty", so the planner picked a nested-loop anti join that rescans the snapshot table once
-- per new row (minutes at 100k users, quadratic at 1M memberships).
SET LOCAL jit = off;
SET LOCAL work_mem = '256MB';
SET LOCAL enable_nestloop = off;
DROP TABLE IF EXISTS pg_temp.sp_edges;
CREATE TEMP TABLE sp_edges ON COMMIT DROP AS
SELECT e.group_id AS parent, e.member_id AS child
FROM staging.group_members e
WHERE e.tenant = :tenant AND e.member_type = 'group';
ANALYZE sp_edges;
DROP TABLE IF EXISTS pg_temp.sp_closure;
CREATE TEMP TABLE sp_closure ON COMMIT DROP AS
WITH RECURSIVE closure (ancestor, descendant) AS (
    SELECT e.parent, e.child
    FROM sp_edges e
    WHERE EXISTS (SELECT 1 FROM staging.groups g WHERE g.tenant = :tenant AND g.id = e.parent)
    UNION
    SELECT c.ancestor, e.child
    FROM closure c
    JOIN sp_edges e ON e.parent = c.descendant
)
SELECT ancestor, descendant FROM closure WHERE ancestor <> descendant;
ANALYZE sp_closure
