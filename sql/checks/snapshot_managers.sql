-- Every imported user and its manager, two columns: a daily snapshot_users check walks every
-- manager chain in Python (snapshot.manager_chain_ends, ~10 ms at 100k users) from these.
SELECT graph_id, manager_graph_id
FROM sync.snapshot_users
WHERE tenant = :tenant AND included
