-- A family is read in full: the next transform rebuilds the whole snapshot, and the staging
-- triggers stop recording single keys for this tenant (sync.touched, migration 014).
INSERT INTO sync.touched (tenant, kind, id) VALUES (:t, 'full', '') ON CONFLICT DO NOTHING
