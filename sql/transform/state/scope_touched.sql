-- Whether a touched group (its row or a nesting edge below it) is a scope group or nested
-- under one (sp_closure is the new closure; a removed edge leaves its parent touched).
SELECT EXISTS (
    SELECT 1 FROM sp_touched t
    WHERE t.kind = 'group'
      AND (t.id = ANY (CAST(:scope_group_ids AS text[]))
           OR t.id IN (SELECT c.descendant FROM sp_closure c
                        WHERE c.ancestor = ANY (CAST(:scope_group_ids AS text[])))))
