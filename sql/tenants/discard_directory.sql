-- A tenant pointed at another directory (its tenant_id, client_id or graph_base_url changed)
-- starts clean, in the transaction of the settings change: its staging rows and delta links
-- belonged to the old directory, and an incremental read would lay the new one's changes
-- over them. The next sync is a full read and the transform rebuilds whole (the 'full'
-- marker, which also keeps the staging triggers from recording these deletes one by one:
-- they fire after this statement and see it). The app's rows stay, matched by Graph id as
-- usual; whoever the new directory lacks goes through the deactivation gate and the safety
-- limit like any leaver. One statement (data-modifying CTEs), so nothing runs half.
WITH u AS (DELETE FROM staging.users WHERE tenant = :t),
     l AS (DELETE FROM staging.user_licences WHERE tenant = :t),
     m AS (DELETE FROM staging.user_managers WHERE tenant = :t),
     g AS (DELETE FROM staging.groups WHERE tenant = :t),
     gm AS (DELETE FROM staging.group_members WHERE tenant = :t),
     s AS (DELETE FROM staging.subscribed_skus WHERE tenant = :t),
     sm AS (DELETE FROM staging.suspended_members WHERE tenant = :t),
     ug AS (DELETE FROM staging.unreadable_groups WHERE tenant = :t),
     up AS (DELETE FROM staging.user_purposes WHERE tenant = :t),
     e AS (DELETE FROM staging.extractions WHERE tenant = :t),
     d AS (DELETE FROM sync.delta_state WHERE tenant = :t)
INSERT INTO sync.touched (tenant, kind, id) VALUES (:t, 'full', '') ON CONFLICT DO NOTHING
