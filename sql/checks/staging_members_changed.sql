-- staging_members.sql for a daily check (checks/scope.py), from what the extraction wrote
-- since the last transform (sync.touched, migrations 014 and 017); the same columns:
-- - every member of a group with a nesting edge or a member of another type written
--   ('nesting', 'members'): those rows are only recorded per group;
-- - the memberships of the users written ('user'): a user member joining or leaving is
--   recorded as the user, and a user gone while still listed shows here;
-- - for a group whose own row was written ('group': Graph's delta lists a group again when a
--   member moves), one member only: whether the group still has members is all the group's
--   row can change here (a group gone from staging with members left).
-- The tenant's membership count is the one the staging triggers keep (sync.staged_rows,
-- migration 017).
WITH grp AS (
    SELECT t.id AS group_id
    FROM sync.touched t
    WHERE t.tenant = :tenant AND t.kind IN ('members', 'nesting')
), rows AS (
    SELECT g.group_id, gm.member_id, gm.member_type
    FROM grp g
    LEFT JOIN staging.group_members gm ON gm.tenant = :tenant AND gm.group_id = g.group_id
    UNION
    SELECT gm.group_id, gm.member_id, gm.member_type
    FROM sync.touched t
    JOIN staging.group_members gm ON gm.tenant = :tenant AND gm.member_id = t.id
    WHERE t.tenant = :tenant AND t.kind = 'user'
    UNION
    SELECT t.id, one.member_id, one.member_type
    FROM sync.touched t
    LEFT JOIN LATERAL (
        SELECT gm.member_id, gm.member_type
        FROM staging.group_members gm
        WHERE gm.tenant = :tenant AND gm.group_id = t.id
        LIMIT 1
    ) one ON true
    WHERE t.tenant = :tenant AND t.kind = 'group'
), looked AS (
    SELECT
        r.group_id,
        r.member_id,
        r.member_type,
        r.member_type IN ('user', 'group')
            AND NOT EXISTS (SELECT 1 FROM staging.users u
                            WHERE u.tenant = :tenant AND u.id = r.member_id)
            AND NOT EXISTS (SELECT 1 FROM staging.groups s
                            WHERE s.tenant = :tenant AND s.id = r.member_id) AS missing,
        r.member_type IS NOT NULL AND r.member_type NOT IN ('user', 'group')
            AND NOT r.member_type = ANY (CAST(:other_types AS text[]))
            AND NOT EXISTS (SELECT 1 FROM staging.users u
                            WHERE u.tenant = :tenant AND u.id = r.member_id)
            AND NOT EXISTS (SELECT 1 FROM staging.groups s
                            WHERE s.tenant = :tenant AND s.id = r.member_id) AS unknown_type
    FROM rows r
), per_group AS (
    SELECT
        l.group_id,
        count(l.member_id) AS members,
        count(*) FILTER (WHERE l.missing) AS missing_members,
        count(*) FILTER (WHERE l.unknown_type) AS unknown_type_members,
        min(l.member_type || ':' || l.member_id) FILTER (WHERE l.missing) AS first_missing,
        max(l.member_type || ':' || l.member_id) FILTER (WHERE l.missing) AS last_missing,
        min(l.member_type || ':' || l.member_id) FILTER (WHERE l.unknown_type)
            AS first_unknown_type,
        max(l.member_type || ':' || l.member_id) FILTER (WHERE l.unknown_type)
            AS last_unknown_type
    FROM looked l
    GROUP BY l.group_id
)
SELECT
    p.group_id,
    EXISTS (SELECT 1 FROM staging.groups s WHERE s.tenant = :tenant AND s.id = p.group_id)
        AS group_staged,
    p.missing_members,
    concat_ws(', ', p.first_missing, nullif(p.last_missing, p.first_missing)) AS missing_sample,
    p.unknown_type_members,
    concat_ws(', ', p.first_unknown_type, nullif(p.last_unknown_type, p.first_unknown_type))
        AS unknown_type_sample,
    coalesce((SELECT r.n FROM sync.staged_rows r
              WHERE r.tenant = :tenant AND r.tbl = 'group_members'), 0) AS memberships_staged
FROM per_group p
-- a group gone from staging with its members gone too is no row, as in the whole query
WHERE p.members > 0
   OR EXISTS (SELECT 1 FROM staging.groups s WHERE s.tenant = :tenant AND s.id = p.group_id)
