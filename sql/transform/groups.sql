-- Settings applied to staging.groups: one row per Graph group, its kind, whether it is imported
-- and, if not, why; an imported group listed in the mapping names its app group.
-- Reason precedence: groups_disabled, distribution_list, unsupported_type, type_not_selected,
-- not_selected. Statements end with a semicolon at the end of a line.
DROP TABLE IF EXISTS pg_temp.sp_groups;
CREATE TEMP TABLE sp_groups ON COMMIT DROP AS
WITH kinds AS (
    SELECT
        g.id,
        -- a blank name (Unicode whitespace too) is shown as the Graph id
        coalesce(nullif(sync.trim_space(g.display_name), ''), g.id) AS name,
        CASE
            WHEN jsonb_typeof(g.group_types) = 'array' AND g.group_types ? 'Unified'
                THEN 'microsoft365'
            WHEN g.security_enabled AND g.mail_enabled THEN 'mail_enabled_security'
            WHEN g.security_enabled THEN 'security'
            WHEN g.mail_enabled THEN 'distribution'
            ELSE 'unknown'
        END AS kind
    FROM staging.groups g
    WHERE g.tenant = :tenant
), decided AS (
    SELECT
        k.*,
        CASE
            WHEN NOT CAST(:include_groups AS boolean) THEN 'groups_disabled'
            WHEN k.kind = 'distribution' THEN 'distribution_list'
            WHEN k.kind = 'unknown' THEN 'unsupported_type'
            WHEN NOT (CASE WHEN k.kind = 'microsoft365' THEN 'microsoft365' ELSE 'security' END)
                     = ANY (CAST(:group_types AS text[])) THEN 'type_not_selected'
            WHEN cardinality(CAST(:group_ids AS text[])) > 0
                 AND NOT k.id = ANY (CAST(:group_ids AS text[])) THEN 'not_selected'
        END AS reason
    FROM kinds k
)
SELECT
    d.id, d.reason, d.name, d.kind,
    CASE WHEN d.reason IS NULL AND CAST(:group_mapping_enabled AS boolean)
         THEN nullif(btrim(CAST(:group_mapping AS jsonb) ->> d.id), '') END AS mapped_to
FROM decided d;
CREATE UNIQUE INDEX ON sp_groups (id);
ANALYZE sp_groups;
-- The groups whose inclusion changed, new and gone ones included: the incremental path
-- recomputes their memberships whole (inc_memberships.sql). A group's inclusion decides only
-- its own pairs (a nested group's members count for its parents whether or not it is
-- imported itself, memberships.sql).
DROP TABLE IF EXISTS pg_temp.sp_groups_flipped;
CREATE TEMP TABLE sp_groups_flipped ON COMMIT DROP AS
SELECT coalesce(n.id, o.graph_id) AS id
FROM sp_groups n
FULL JOIN (SELECT s.graph_id, s.included FROM sync.snapshot_groups s WHERE s.tenant = :tenant) o
  ON o.graph_id = n.id
WHERE n.id IS NULL OR o.graph_id IS NULL OR (n.reason IS NULL) <> o.included;
-- Only the difference is written (gone, changed, new).
DELETE FROM sync.snapshot_groups s
WHERE s.tenant = :tenant AND NOT EXISTS (SELECT 1 FROM sp_groups g WHERE g.id = s.graph_id);
UPDATE sync.snapshot_groups s
SET included = g.reason IS NULL, reason = g.reason, name = g.name, group_kind = g.kind,
    mapped_to = g.mapped_to
FROM sp_groups g
WHERE s.tenant = :tenant AND s.graph_id = g.id
  AND (s.included, s.reason, s.name, s.group_kind, s.mapped_to)
      IS DISTINCT FROM (g.reason IS NULL, g.reason, g.name, g.kind, g.mapped_to);
INSERT INTO sync.snapshot_groups (tenant, graph_id, included, reason, name, group_kind, mapped_to)
SELECT :tenant, g.id, g.reason IS NULL, g.reason, g.name, g.kind, g.mapped_to
FROM sp_groups g
WHERE NOT EXISTS (
    SELECT 1 FROM sync.snapshot_groups s WHERE s.tenant = :tenant AND s.graph_id = g.id)
