-- Of the given tables (schema.name), those the sync should VACUUM itself, right after its load:
-- - fewer than four pages in five are all-visible: a bulk load (a tenant's first sync) leaves
--   none, and the checks and the diff read the table within seconds, before autovacuum's
--   next round (relallvisible is current after the ANALYZE the load runs);
-- - or, where autovacuum is off, the rows changed since the last VACUUM exceed a quarter of the
--   table's pages: a daily sync's few thousand scattered changes each clear a page's
--   all-visible bit, so later scans re-check those pages and index-only scans visit them.
--   Where autovacuum is on, migration 010's per-table thresholds have it do this in the
--   background instead.
-- Tiny tables are left alone, and so are tables over :max_pages (many tenants' rows): a
-- VACUUM of those would hold up one tenant's sync for the others' changes.
SELECT n.nspname || '.' || c.relname AS name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname || '.' || c.relname = ANY (CAST(:tables AS text[]))
  AND c.relpages BETWEEN 64 AND :max_pages
  AND (c.relallvisible < 0.8 * c.relpages
       OR (current_setting('autovacuum') = 'off'
           AND coalesce(s.n_dead_tup, 0) + coalesce(s.n_ins_since_vacuum, 0) > 0.25 * c.relpages))
ORDER BY 1
