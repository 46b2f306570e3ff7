-- Group nesting closure of one tenant: (ancestor, descendant) for every group, itself included.
-- UNION (not UNION ALL) drops pairs already seen, so nesting cycles terminate.
-- Statements are separated by a semicolon at the end of a line (rules.run_script).
-- For this transaction only: JIT compiles these large one-off statements for longer than they
-- run (seconds at 100k users), and hash aggregates over millions of memberships want memory.
SET LOCAL jit = off;
SET LOCAL work_mem = '256MB';
DROP TABLE IF EXISTS pg_temp.sp_closure;
CREATE TEMP TABLE sp_closure ON COMMIT DROP AS
WITH RECURSIVE closure (ancestor, descendant) AS (
    SELECT g.id, g.id FROM staging.groups g WHERE g.tenant = :tenant
    UNION
    SELECT c.ancestor, e.member_id
    FROM closure c
    JOIN staging.group_members e
      ON e.tenant = :tenant AND e.group_id = c.descendant AND e.member_type = 'group'
)
SELECT ancestor, descendant FROM closure;
CREATE INDEX ON sp_closure (descendant);
ANALYZE sp_closure
