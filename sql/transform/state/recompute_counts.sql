-- (users, groups) the incremental transform recomputes (incremental.sql).
SELECT (SELECT count(*) FROM sp_recompute), (SELECT count(*) FROM sp_ga)
