-- Direct memberships summed up per group (a frame the size of the group list, not of the
-- membership list): whether the group itself was staged, and how many of its members point at
-- a user or group the extraction did not stage, or are of a type we do not know. Members of
-- other known directory types (contacts, devices, service principals) are not staged and fine.
-- Cheap at 1.4 M rows: the staged users and groups are the hashed (small) side of two left
-- joins, each probed only for members of its kind, and the per-group state is a few scalars
-- (min/max as the sample instead of array_agg), so the aggregate is hashed in memory instead
-- of sorting every membership.
WITH flagged AS (
    SELECT
        gm.group_id, gm.member_type, gm.member_id,
        u.id IS NULL AND g.id IS NULL
            AND NOT gm.member_type = ANY (CAST(:other_types AS text[])) AS unknown
    FROM staging.group_members gm
    LEFT JOIN staging.users u
      ON gm.member_type = 'user' AND u.tenant = :tenant AND u.id = gm.member_id
    LEFT JOIN staging.groups g
      ON gm.member_type = 'group' AND g.tenant = :tenant AND g.id = gm.member_id
    WHERE gm.tenant = :tenant
), members AS (
    SELECT
        group_id,
        count(*) AS members,
        count(*) FILTER (WHERE unknown) AS unknown_members,
        min(member_type || ':' || member_id) FILTER (WHERE unknown) AS first_unknown,
        max(member_type || ':' || member_id) FILTER (WHERE unknown) AS last_unknown
    FROM flagged
    GROUP BY group_id
), staged AS (
    SELECT id FROM staging.groups WHERE tenant = :tenant
)
SELECT
    coalesce(s.id, m.group_id) AS group_id,
    s.id IS NOT NULL AS group_staged,
    coalesce(m.members, 0) AS members,
    coalesce(m.unknown_members, 0) AS unknown_members,
    concat_ws(', ', m.first_unknown, nullif(m.last_unknown, m.first_unknown)) AS unknown_sample
FROM staged s
FULL JOIN members m ON m.group_id = s.id
