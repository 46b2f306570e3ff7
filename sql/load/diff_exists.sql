-- Whether the run's planned diff rows are there (sync.diffs is unlogged; a crash empties it).
SELECT EXISTS (SELECT 1 FROM sync.diffs WHERE tenant = :tenant AND run_id = :run_id)
