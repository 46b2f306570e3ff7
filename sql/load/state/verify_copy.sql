-- A whole verification of the diff (diff.compute_diff_path, verify): the incremental diff's
-- rows, set aside before the whole diff is computed for the same run.
DROP TABLE IF EXISTS pg_temp.sp_verify_diffs;
CREATE TEMP TABLE sp_verify_diffs ON COMMIT DROP AS
SELECT entity, action, key, label, app_id, before, after,
       group_app_id, group_external_id, user_app_id, user_external_id
FROM sync.diffs WHERE tenant = :tenant AND run_id = :run_id
