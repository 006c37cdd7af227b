-- The ledger's rules with fewer trigger calls per batch (issue #18, item 1). Same rules, same
-- errors (codes, constraint names, messages), in the same order; only where they run changes.
--
-- Why: a batch's PostgreSQL work is dominated by fixed costs, and every trigger call is one: a
-- statement-level trigger with a transition table cost 13-17 us per batch in
-- `pg_stat_user_functions` even when its query was trivial, and a PL/pgSQL row trigger costs a
-- few microseconds per row even when it only returns NEW (pgbench on this machine, UPDATEs of 7
-- wallet rows: 124-141 us without the row trigger, 177-185 us with it). A batch of n transfers
-- called two statement triggers (`transfers_lock_wallets`, `entries_floor`) and about 3n row
-- triggers (`transfers_id_issued` per transfer, `wallets_before_update` per touched wallet)
-- that only ever raise on a violation.
--
-- 1. `transfers_post` takes over `transfers_lock_wallets` (0047): it first locks the statement's
--    wallets in id order, as that trigger did, before it reads any balance. AFTER triggers of
--    one event fire in name order, so `transfers_audit_coupled` (FT030) still runs first; it
--    stays a trigger of its own because `fintrail_db::coupling` switches the coupling triggers
--    by name.
-- 2. `transfers_post` takes over `entries_floor` (0047): the entries INSERT returns the rows it
--    wrote, and the same statement checks every running balance against its wallet's floor
--    (23514, constraint `wallets_floor`, the same message), before the balances move. Entries
--    are written only here: `entries_before_insert` (FT012) refuses any INSERT on entries that
--    does not come from a trigger, so no other writer needs the check.
-- 3. `transfers_id_issued` and `wallets_before_update` keep their functions, which still decide
--    and raise, but PostgreSQL calls them only when their condition can fail (a trigger's WHEN
--    clause is evaluated in the executor, without a PL/pgSQL call). The depth in WHEN is the
--    depth of the statement (0 for a client's own UPDATE), one less than inside the function:
--    `pg_trigger_depth() < 1` there is the function's `< 2`.

CREATE OR REPLACE FUNCTION fintrail.transfers_post() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp SET enable_seqscan = off AS $fn$
DECLARE
    bad record;
BEGIN
    -- The statement's wallets, locked in id order (the one lock order, as `lock_wallets`), before
    -- any balance is read. The engine holds these locks already; a raw INSERT does not. The ids
    -- come from the transition table first and are looked up by primary key (0047: the planner
    -- would otherwise scan every wallet; `enable_seqscan = off` is this function's own setting).
    PERFORM 1 FROM fintrail.wallets w
     WHERE w.id = ANY (ARRAY(SELECT nt.debit_wallet_id FROM nt UNION SELECT nt.credit_wallet_id FROM nt))
     ORDER BY w.id FOR UPDATE;

    -- Both wallets exist (FK) and carry the transfer's currency; system accounts only where the
    -- kind says so.
    SELECT nt.id, d.currency AS dc, c.currency AS cc, nt.currency, nt.kind, d.kind AS dk, d.system_name AS dn,
           c.kind AS ck, c.system_name AS cn
      INTO bad
      FROM nt JOIN fintrail.wallets d ON d.id = nt.debit_wallet_id JOIN fintrail.wallets c ON c.id = nt.credit_wallet_id
     WHERE d.currency <> nt.currency OR c.currency <> nt.currency
        OR (nt.kind IN ('transfer', 'hold_post') AND (d.kind = 'system' OR c.kind = 'system'))
        OR (nt.kind = 'deposit' AND (d.system_name IS DISTINCT FROM 'external_funding' OR c.kind = 'system'))
        OR (nt.kind = 'withdrawal' AND (c.system_name IS DISTINCT FROM 'settlement' OR d.kind = 'system'))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers %: wallets do not fit (currency %/%/% kind %, debit %/% credit %/%)',
            bad.id, bad.currency, bad.dc, bad.cc, bad.kind, bad.dk, bad.dn, bad.ck, bad.cn USING ERRCODE = 'FT013';
    END IF;
    -- A reversal mirrors its original exactly; a reversal is never reversed.
    SELECT nt.id INTO bad FROM nt JOIN fintrail.transfers o ON o.id = nt.reverses_transfer_id
     WHERE o.kind = 'reversal' OR o.debit_wallet_id <> nt.credit_wallet_id OR o.credit_wallet_id <> nt.debit_wallet_id
        OR o.amount_minor <> nt.amount_minor OR o.currency <> nt.currency
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers %: a reversal must mirror its original', bad.id USING ERRCODE = 'FT014';
    END IF;
    -- A hold posting: the hold was posted in this transaction for exactly this amount.
    SELECT nt.id INTO bad FROM nt JOIN fintrail.holds h ON h.id = nt.hold_id
     WHERE h.status <> 'posted' OR h.posted_minor <> nt.amount_minor OR h.debit_wallet_id <> nt.debit_wallet_id
        OR h.credit_wallet_id <> nt.credit_wallet_id OR h.currency <> nt.currency
        OR h.settled_at <> now()
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers %: does not match its hold', bad.id USING ERRCODE = 'FT015';
    END IF;

    -- Entries in transfer order, each with its wallet's running balance (the wallet row still
    -- holds the balance from before this statement: it is updated below), and every running
    -- balance at or above its wallet's floor: one multi-entry statement could take a floored
    -- wallet below its floor between two of its entries and back, which the end-of-statement
    -- CHECK (`wallets_floor`) cannot see. A data-modifying WITH runs to completion whatever its
    -- reader takes, so every entry is written before the check reads them.
    WITH written AS (
        INSERT INTO fintrail.entries (transfer_id, wallet_id, amount_minor, currency, balance_after_minor, created_at)
        SELECT nt.id, s.wallet_id, s.amount_minor, nt.currency,
               (w.balance_minor + sum(s.amount_minor) OVER (PARTITION BY s.wallet_id ORDER BY nt.id, s.side))::bigint,
               nt.created_at
          FROM nt CROSS JOIN LATERAL (VALUES (0, nt.debit_wallet_id, -nt.amount_minor), (1, nt.credit_wallet_id, nt.amount_minor))
               AS s (side, wallet_id, amount_minor)
          JOIN fintrail.wallets w ON w.id = s.wallet_id
         ORDER BY nt.id, s.side
        RETURNING transfer_id, wallet_id, balance_after_minor
    )
    SELECT e.transfer_id, e.wallet_id, e.balance_after_minor, w.held_minor, w.floor_minor INTO bad
      FROM written e JOIN fintrail.wallets w ON w.id = e.wallet_id
     WHERE w.floor_minor IS NOT NULL AND e.balance_after_minor::numeric - w.held_minor < w.floor_minor
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers %: wallet % would stand at % (held %) below its floor % after this entry',
            bad.transfer_id, bad.wallet_id, bad.balance_after_minor, bad.held_minor, bad.floor_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallets_floor';
    END IF;

    -- One update per touched wallet; the sum is numeric, the cast raises on bigint overflow,
    -- and the wallets_floor CHECK refuses a balance below its floor.
    UPDATE fintrail.wallets w SET balance_minor = (w.balance_minor + d.delta)::bigint
      FROM (SELECT s.wallet_id, sum(s.amount_minor)::numeric AS delta
              FROM nt CROSS JOIN LATERAL (VALUES (nt.debit_wallet_id, -nt.amount_minor), (nt.credit_wallet_id, nt.amount_minor))
                   AS s (wallet_id, amount_minor)
             GROUP BY s.wallet_id) d
     WHERE w.id = d.wallet_id;
    RETURN NULL;
END
$fn$;

DROP TRIGGER transfers_lock_wallets ON fintrail.transfers;
DROP FUNCTION fintrail.transfers_lock_wallets();
DROP TRIGGER entries_floor ON fintrail.entries;
DROP FUNCTION fintrail.entries_floor();

-- The function still raises FT021 itself; WHEN only spares the call for an issued id.
DROP TRIGGER transfers_id_issued ON fintrail.transfers;
CREATE TRIGGER transfers_id_issued BEFORE INSERT ON fintrail.transfers
    FOR EACH ROW WHEN (NEW.id < 1 OR NEW.id > coalesce(pg_sequence_last_value('fintrail.transfers_id_seq'), 0))
    EXECUTE FUNCTION fintrail.transfers_id_issued();

-- The function still raises FT011 itself (identity first, then depth); WHEN calls it for a
-- client's own UPDATE (depth 0) or an identity change at any depth.
DROP TRIGGER wallets_before_update ON fintrail.wallets;
CREATE TRIGGER wallets_before_update BEFORE UPDATE ON fintrail.wallets
    FOR EACH ROW WHEN (pg_trigger_depth() < 1
        OR (NEW.id, NEW.kind, NEW.customer_id, NEW.organization_id, NEW.system_name, NEW.currency, NEW.floor_minor, NEW.created_at)
           IS DISTINCT FROM
           (OLD.id, OLD.kind, OLD.customer_id, OLD.organization_id, OLD.system_name, OLD.currency, OLD.floor_minor, OLD.created_at))
    EXECUTE FUNCTION fintrail.wallets_before_update();
