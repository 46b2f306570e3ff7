-- Whether the tenant has an extraction of its groups in staging.
SELECT EXISTS (SELECT 1 FROM staging.extractions WHERE tenant = :tenant AND entity = 'groups')
