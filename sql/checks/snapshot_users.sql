-- The users the snapshot imports, with what the snapshot suite checks: the address and the
-- manager (expectations.check_snapshot_users walks the manager chains in Python).
SELECT graph_id, email, manager_graph_id
FROM sync.snapshot_users
WHERE tenant = :tenant AND included
