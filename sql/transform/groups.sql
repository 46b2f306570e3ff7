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
DELETE FROM sync.snapshot_groups WHERE tenant = :tenant;
INSERT INTO sync.snapshot_groups (tenant, graph_id, included, reason, name, group_kind, mapped_to)
SELECT :tenant, g.id, g.reason IS NULL, g.reason, g.name, g.kind, g.mapped_to
FROM sp_groups g
