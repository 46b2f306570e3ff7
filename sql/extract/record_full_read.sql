-- In the extraction's transaction: the time the transaction started, like the staged rows.
INSERT INTO sync.full_reads (tenant, read_at) VALUES (:t, now())
ON CONFLICT (tenant) DO UPDATE SET read_at = excluded.read_at
