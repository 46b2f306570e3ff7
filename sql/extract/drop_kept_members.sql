-- keep_hidden_members.sql's table, should an earlier extraction in this transaction have made it.
DROP TABLE IF EXISTS pg_temp.sp_kept_members
