-- snapshot_users.sql for a daily check (checks/scope.py): the imported users whose snapshot
-- row changed since the last apply (sync.diff_dirty kind 'user', migration 015), the users
-- they manage, and the users in :also (those whose manager chain does not end: the chains are
-- walked over every user in Python, from two columns), with manager_known worked out here;
-- then, over every imported user, the addresses held twice (the index on lower(email), no row
-- read), each user holding one, so that the uniqueness expectation sees both.
WITH changed AS (
    SELECT d.id AS graph_id
    FROM sync.diff_dirty d
    WHERE d.tenant = :tenant AND d.kind = 'user'
    UNION
    SELECT s.graph_id
    FROM sync.diff_dirty d
    JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.manager_graph_id = d.id
    WHERE d.tenant = :tenant AND d.kind = 'user'
    UNION
    SELECT unnest(CAST(:also AS text[]))
), twice AS (
    SELECT lower(s.email) AS k
    FROM sync.snapshot_users s
    WHERE s.tenant = :tenant AND s.included
    GROUP BY lower(s.email)
    HAVING count(*) > 1
), frame AS (
    SELECT s.graph_id, s.email, s.manager_graph_id
    FROM changed c
    JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = c.graph_id AND s.included
    UNION
    SELECT s.graph_id, s.email, s.manager_graph_id
    FROM twice t
    JOIN sync.snapshot_users s ON s.tenant = :tenant AND lower(s.email) = t.k AND s.included
)
SELECT
    f.graph_id,
    f.email,
    sync.address_key(f.email) AS address_key,
    f.manager_graph_id,
    f.manager_graph_id IS NULL OR EXISTS (
        SELECT 1 FROM sync.snapshot_users m
        WHERE m.tenant = :tenant AND m.graph_id = f.manager_graph_id AND m.included
    ) AS manager_known
FROM frame f
