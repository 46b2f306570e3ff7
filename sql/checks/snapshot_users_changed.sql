-- snapshot_users.sql for a daily check (checks/scope.py): the imported users whose snapshot
-- row changed since the last apply (sync.diff_dirty kind 'user', migration 015) and the users
-- they manage, with manager_known and manager_chain_ends worked out here (a walk up from
-- these users only: a new cycle has a changed link, so it is found from that user); then,
-- over every imported user, the addresses held twice (the index on lower(email), no row
-- read), each user holding one, so that the uniqueness expectation sees both.
WITH RECURSIVE changed AS (
    SELECT d.id AS graph_id
    FROM sync.diff_dirty d
    WHERE d.tenant = :tenant AND d.kind = 'user'
    UNION
    SELECT s.graph_id
    FROM sync.diff_dirty d
    JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.manager_graph_id = d.id
    WHERE d.tenant = :tenant AND d.kind = 'user'
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
), walk (start_id, cur) AS (
    SELECT f.graph_id, f.manager_graph_id FROM frame f WHERE f.manager_graph_id IS NOT NULL
    UNION ALL
    SELECT w.start_id, s.manager_graph_id
    FROM walk w
    JOIN sync.snapshot_users s ON s.tenant = :tenant AND s.graph_id = w.cur AND s.included
    WHERE s.manager_graph_id IS NOT NULL
) CYCLE cur SET in_cycle USING walked
SELECT
    f.graph_id,
    f.email,
    sync.address_key(f.email) AS address_key,
    f.manager_graph_id,
    f.manager_graph_id IS NULL OR EXISTS (
        SELECT 1 FROM sync.snapshot_users m
        WHERE m.tenant = :tenant AND m.graph_id = f.manager_graph_id AND m.included
    ) AS manager_known,
    NOT EXISTS (SELECT 1 FROM walk w WHERE w.start_id = f.graph_id AND w.in_cycle)
        AS manager_chain_ends
FROM frame f
