-- Whether a nesting edge changed below a scope group (sp_closure is the new closure; a removed
-- edge leaves its parent touched): then who is in scope may change for every user. A user
-- joining or leaving a scope group touches the user, whose scope users.sql resolves again; a
-- scope group's own row does not decide the scope.
SELECT EXISTS (
    SELECT 1 FROM sp_touched t
    WHERE t.kind = 'nesting'
      AND (t.id = ANY (CAST(:scope_group_ids AS text[]))
           OR t.id IN (SELECT c.descendant FROM sp_closure c
                        WHERE c.ancestor = ANY (CAST(:scope_group_ids AS text[])))))
