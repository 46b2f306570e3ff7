-- What each extraction of the tenant counted (StagingWriter.record), by entity.
SELECT entity, rows
FROM staging.extractions
WHERE tenant = :tenant
