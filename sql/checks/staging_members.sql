-- Direct memberships summed up per group (a frame the size of the group list, not of the
-- membership list): whether the group itself was staged, how many of its members are users or
-- groups that were not staged, and how many are of a type this project does not know
-- (contacts, devices, service principals are not staged, and fine); with, on every row, the
-- tenant's membership count.
-- Cheap at 1.4 M rows because nothing is done once per membership row but reading an index
-- in order (hashing or probing every membership cost ~1.2 CPU-seconds at 100k users): the
-- groups come by skipping through the primary key (one descent per group), the member ids
-- once each from group_members_member, counted as they pass (~100k, whose counts add up to
-- the membership count), only those ids are looked up among the staged users and groups, and
-- only the few left over are joined back to their memberships for their groups and types.
WITH RECURSIVE member_groups AS (
    (SELECT group_id
     FROM staging.group_members
     WHERE tenant = :tenant
     ORDER BY group_id
     LIMIT 1)
    UNION ALL
    SELECT (SELECT m.group_id
            FROM staging.group_members m
            WHERE m.tenant = :tenant AND m.group_id > g.group_id
            ORDER BY m.group_id
            LIMIT 1)
    FROM member_groups g
    WHERE g.group_id IS NOT NULL
), member_ids AS (
    SELECT member_id, count(*) AS memberships
    FROM staging.group_members
    WHERE tenant = :tenant
    GROUP BY member_id
), not_staged AS (
    SELECT m.member_id
    FROM member_ids m
    WHERE NOT EXISTS (SELECT 1 FROM staging.users u WHERE u.tenant = :tenant AND u.id = m.member_id)
      AND NOT EXISTS (SELECT 1 FROM staging.groups g WHERE g.tenant = :tenant AND g.id = m.member_id)
), unknown AS (
    -- a user or group the users or groups read did not return (missing: the reads disagree),
    -- or a member of a type this project does not know (a row the transform ignores)
    SELECT
        gm.group_id,
        count(*) FILTER (WHERE gm.member_type IN ('user', 'group')) AS missing_members,
        count(*) FILTER (WHERE gm.member_type NOT IN ('user', 'group')) AS unknown_type_members,
        min(gm.member_type || ':' || gm.member_id)
            FILTER (WHERE gm.member_type IN ('user', 'group')) AS first_missing,
        max(gm.member_type || ':' || gm.member_id)
            FILTER (WHERE gm.member_type IN ('user', 'group')) AS last_missing,
        min(gm.member_type || ':' || gm.member_id)
            FILTER (WHERE gm.member_type NOT IN ('user', 'group')) AS first_unknown_type,
        max(gm.member_type || ':' || gm.member_id)
            FILTER (WHERE gm.member_type NOT IN ('user', 'group')) AS last_unknown_type
    FROM not_staged n
    JOIN staging.group_members gm ON gm.tenant = :tenant AND gm.member_id = n.member_id
    WHERE NOT gm.member_type = ANY (CAST(:other_types AS text[]))
    GROUP BY gm.group_id
), staged AS (
    SELECT id FROM staging.groups WHERE tenant = :tenant
), with_members AS (
    SELECT group_id FROM member_groups WHERE group_id IS NOT NULL
)
SELECT
    coalesce(s.id, w.group_id) AS group_id,
    s.id IS NOT NULL AS group_staged,
    coalesce(k.missing_members, 0) AS missing_members,
    concat_ws(', ', k.first_missing, nullif(k.last_missing, k.first_missing)) AS missing_sample,
    coalesce(k.unknown_type_members, 0) AS unknown_type_members,
    concat_ws(', ', k.first_unknown_type, nullif(k.last_unknown_type, k.first_unknown_type))
        AS unknown_type_sample,
    (SELECT coalesce(sum(memberships), 0) FROM member_ids) AS memberships_staged
FROM staged s
FULL JOIN with_members w ON w.group_id = s.id
LEFT JOIN unknown k ON k.group_id = coalesce(s.id, w.group_id)
