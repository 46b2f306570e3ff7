-- What the incremental transform recomputes (rules.refresh_snapshot), from the change set in
-- sp_touched (sync.touched, migration 014) and the new nesting closure (closure.sql):
-- sp_recompute, the users whose row is resolved again: every touched user, and every user
-- sharing an address key with one, old or new (their duplicate_email ranks may change); and
-- sp_ga, the groups whose flattened memberships are recomputed whole: every group with a
-- nesting edge touched ('nesting', migration 017), and every group above one. An edge removed
-- below a group leaves its parent touched, and the path from the group down to that parent
-- unchanged, so the new closure finds the group. groups.sql adds the groups whose inclusion
-- changed (sp_groups_flipped). A user joining or leaving a group ('members') is no reason to
-- recompute the whole group: the same write touched the user ('user'), and a recomputed
-- user's memberships are recomputed in every group above their direct ones
-- (inc_memberships.sql), which is exactly where that pair can appear or vanish.
-- Statements end with a semicolon at the end of a line.
-- Few keys, looked up by index: nested loops are welcome again here (see closure.sql), and so
-- are index probes. At the default random_page_cost (4, for spinning disks) the planner would
-- rather scan a tenant's 1.2 M memberships than probe an index a few thousand times; the
-- tables the transform reads are hot in the cache, where a probe costs about what the value
-- for SSDs (1.1) says. Both are reset at the end of inc_memberships.sql.
SET LOCAL enable_nestloop = on;
SET LOCAL random_page_cost = 1.1;
CREATE TEMP TABLE IF NOT EXISTS sp_recompute (id text PRIMARY KEY) ON COMMIT DROP;
TRUNCATE sp_recompute;
INSERT INTO sp_recompute (id)
SELECT DISTINCT t.id FROM sp_touched t WHERE t.kind = 'user';
DROP TABLE IF EXISTS pg_temp.sp_keys;
CREATE TEMP TABLE sp_keys ON COMMIT DROP AS
-- Every address a touched user could resolve to, whatever email_method says (a superset is
-- safe); the key of a clean form is its lower() (clean_address is idempotent), which is how
-- the snapshot's stored addresses are looked up (index snapshot_users_email).
SELECT x.k
FROM sp_recompute r
JOIN staging.users u ON u.tenant = :tenant AND u.id = r.id
CROSS JOIN LATERAL (
    SELECT sync.address_key(u.user_principal_name)
    UNION ALL
    SELECT sync.address_key(u.mail)
    UNION ALL
    SELECT sync.address_key(substr(p.v, 6))
    FROM jsonb_array_elements_text(
             CASE WHEN jsonb_typeof(u.proxy_addresses) = 'array'
                  THEN u.proxy_addresses ELSE '[]' END) AS p (v)
    WHERE lower(left(p.v, 5)) = 'smtp:'
) AS x (k)
WHERE x.k IS NOT NULL
UNION
SELECT lower(s.email)
FROM sp_recompute r
JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = r.id
WHERE s.email IS NOT NULL;
INSERT INTO sp_recompute (id)
SELECT s.graph_id
FROM sync.snapshot_users s
WHERE s.tenant = :tenant AND lower(s.email) IN (SELECT k.k FROM sp_keys k)
ON CONFLICT DO NOTHING;
ANALYZE sp_recompute;
DROP TABLE IF EXISTS pg_temp.sp_ga;
CREATE TEMP TABLE sp_ga ON COMMIT DROP AS
SELECT t.id FROM sp_touched t WHERE t.kind = 'nesting'
UNION
SELECT c.ancestor
FROM sp_touched t
JOIN sp_closure c ON c.descendant = t.id
WHERE t.kind = 'nesting';
CREATE UNIQUE INDEX ON sp_ga (id);
ANALYZE sp_ga
