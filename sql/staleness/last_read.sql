-- When the tenant's last complete read was: its users' extraction time (staleness.freshness).
SELECT extracted_at FROM staging.extractions WHERE tenant = :tenant AND entity = 'users'
