-- The tenant's active app users (any source): the base of the deactivation safety limit.
SELECT count(*) FROM app.users WHERE tenant = :tenant AND is_active
