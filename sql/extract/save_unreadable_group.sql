-- A group whose members Graph refused (403), with the permission to grant.
INSERT INTO staging.unreadable_groups (tenant, group_id, permission, status, code, request_id)
VALUES (:t, :g, :permission, :status, :code, :request_id)
ON CONFLICT (tenant, group_id) DO UPDATE
SET permission = EXCLUDED.permission, status = EXCLUDED.status, code = EXCLUDED.code,
    request_id = EXCLUDED.request_id
