-- Of the given tables (schema.name), those a plain VACUUM would serve: rows written or deleted
-- since the last VACUUM exceed a quarter of the table's pages (a daily sync's few thousand
-- scattered changes each clear a page's all-visible bit, so every later scan re-checks those
-- pages' rows and an index-only scan has to visit them; their dead rows pile up besides), or
-- fewer than four pages in five are all-visible (a bulk load leaves none; relallvisible is
-- current after the ANALYZE the load runs, while the row counters may lag by a second).
-- Tiny tables are left alone.
SELECT n.nspname || '.' || c.relname AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname || '.' || c.relname = ANY (CAST(:tables AS text[]))
  AND c.relpages >= 64
  AND (c.relallvisible < 0.8 * c.relpages
       OR coalesce(s.n_dead_tup, 0) + coalesce(s.n_ins_since_vacuum, 0) > 0.25 * c.relpages)
ORDER BY 1
