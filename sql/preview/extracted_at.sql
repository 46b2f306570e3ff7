-- When the tenant's users were last read into staging (null: never, so nothing to preview).
SELECT extracted_at FROM staging.extractions WHERE tenant = :tenant AND entity = 'users'
