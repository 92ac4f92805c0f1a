-- Writes to pglock.locks that do not go through pglock's functions (a
-- superuser's INSERT, UPDATE or DELETE, pg_restore's COPY, TRUNCATE): the
-- server did not see them, so it stops counting any lock as unchanged from
-- before they ended (src/observed.rs).  pglock's own writes go through the heap
-- directly and fire no trigger.
CREATE TRIGGER unseen_writes
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pglock.locks
    FOR EACH STATEMENT EXECUTE FUNCTION pglock.unseen_writes();
