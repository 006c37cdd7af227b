-- The running balance is computed under the wallet lock and respects the floor on every entry
-- (issue #16, item 6). Two statement-level triggers around `transfers_post` (0030), which is
-- left as it is:
-- * `transfers_lock_wallets` locks the statement's wallets, in id order as `lock_wallets`
--   does, before `transfers_post` reads their balances (AFTER triggers of one event fire in
--   name order: "transfers_lock_wallets" < "transfers_post"). The engine holds these locks
--   already; a raw INSERT did not, and computed running balances that could move under it.
-- * `entries_floor` checks every entry's running balance against its wallet's floor: one
--   multi-entry statement could take a floored wallet below its floor between two of its
--   entries and back, which the end-of-statement CHECK (`wallets_floor`) cannot see. Refused
--   like any overdraft (23514, constraint `wallets_floor`).

CREATE FUNCTION fintrail.transfers_lock_wallets() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
BEGIN
    PERFORM 1 FROM fintrail.wallets w
     WHERE w.id IN (SELECT nt.debit_wallet_id FROM nt UNION SELECT nt.credit_wallet_id FROM nt)
     ORDER BY w.id FOR UPDATE;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER transfers_lock_wallets AFTER INSERT ON fintrail.transfers
    REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION fintrail.transfers_lock_wallets();

CREATE FUNCTION fintrail.entries_floor() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
DECLARE
    bad record;
BEGIN
    SELECT ne.transfer_id, ne.wallet_id, ne.balance_after_minor, w.held_minor, w.floor_minor INTO bad
      FROM ne JOIN fintrail.wallets w ON w.id = ne.wallet_id
     WHERE w.floor_minor IS NOT NULL AND ne.balance_after_minor::numeric - w.held_minor < w.floor_minor
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers %: wallet % would stand at % (held %) below its floor % after this entry',
            bad.transfer_id, bad.wallet_id, bad.balance_after_minor, bad.held_minor, bad.floor_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallets_floor';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER entries_floor AFTER INSERT ON fintrail.entries
    REFERENCING NEW TABLE AS ne FOR EACH STATEMENT EXECUTE FUNCTION fintrail.entries_floor();
