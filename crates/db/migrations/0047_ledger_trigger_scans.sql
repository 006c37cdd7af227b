-- The ledger's statement triggers read only the wallets a batch touches (issue #18, item 1).
-- Same rules, same errors, same lock order; only how PostgreSQL finds the rows changes.
--
-- Profiled on `fintrail bench transfers` (auto_explain of the nested statements, 1 000
-- wallets): two triggers of the transfers INSERT joined their transition table to `wallets`
-- with a hash join over a sequential scan of the whole table, once per batch. The planner
-- cannot see that a transition table of a few rows should drive an index lookup: it costed
-- a scan of 1 000 wallets (29 pages) near 8 probes, and the scan tests each row against the
-- whole list of ids. It cost 0.27-0.36 ms per batch each (more than the rest of the INSERT's
-- triggers together), and it grows with the number of wallets. Both functions now plan with
-- `enable_seqscan = off` (a function's own setting, for its statements only): the ids are
-- taken from the transition table first (`= ANY (ARRAY(subquery))`) and looked up through
-- the primary key.
--
-- 1. `transfers_lock_wallets` (0000): locks the statement's wallets in id order.
CREATE OR REPLACE FUNCTION fintrail.transfers_lock_wallets() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp SET enable_seqscan = off AS $fn$
BEGIN
    PERFORM 1 FROM fintrail.wallets w
     WHERE w.id = ANY (ARRAY(SELECT nt.debit_wallet_id FROM nt UNION SELECT nt.credit_wallet_id FROM nt))
     ORDER BY w.id FOR UPDATE;
    RETURN NULL;
END
$fn$;

-- 2. `entries_floor` (0000): every entry's running balance against its wallet's floor. The
-- `= ANY` condition restricts the wallets probed to the statement's; the join's condition
-- is unchanged.
CREATE OR REPLACE FUNCTION fintrail.entries_floor() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp SET enable_seqscan = off AS $fn$
DECLARE
    bad record;
BEGIN
    SELECT ne.transfer_id, ne.wallet_id, ne.balance_after_minor, w.held_minor, w.floor_minor INTO bad
      FROM ne JOIN fintrail.wallets w ON w.id = ne.wallet_id
     WHERE w.id = ANY (ARRAY(SELECT ne.wallet_id FROM ne))
       AND w.floor_minor IS NOT NULL AND ne.balance_after_minor::numeric - w.held_minor < w.floor_minor
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers %: wallet % would stand at % (held %) below its floor % after this entry',
            bad.transfer_id, bad.wallet_id, bad.balance_after_minor, bad.held_minor, bad.floor_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallets_floor';
    END IF;
    RETURN NULL;
END
$fn$;

-- 3. Entries are written only by the transfers trigger (0000, FT012): checked once per INSERT
-- statement instead of once per entry row (two per transfer). The trigger depth is the same
-- for a statement-level trigger: 2 inside `transfers_post`, 1 for a client's INSERT, which is
-- refused before any row is written, and now even when it would write no row at all.
DROP TRIGGER entries_before_insert ON fintrail.entries;
CREATE OR REPLACE FUNCTION fintrail.entries_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'entries: written only with their transfer' USING ERRCODE = 'FT012';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER entries_before_insert BEFORE INSERT ON fintrail.entries
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.entries_before_insert();
