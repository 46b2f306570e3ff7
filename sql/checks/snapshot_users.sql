-- The users the snapshot imports, with what the snapshot suite checks: the address and its key
-- (sync.address_key, the very function the transform settles duplicates and the deny list
-- with, so the two cannot disagree), and the manager (expectations.check_snapshot_users walks
-- the manager chains in Python).
SELECT graph_id, email, sync.address_key(email) AS address_key, manager_graph_id
FROM sync.snapshot_users
WHERE tenant = :tenant AND included
