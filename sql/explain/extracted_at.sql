-- When the tenant's users were last extracted from Graph.
SELECT extracted_at FROM staging.extractions WHERE tenant = :tenant AND entity = 'users'
