-- `lock_wallets` as PL/pgSQL instead of SQL: a SECURITY DEFINER SQL function with a SET clause
-- is never inlined and re-parses and re-plans its body on every call (once per batch, in the
-- hot path); PL/pgSQL keeps the plan for the session. Same signature, rows, order and locks;
-- CREATE OR REPLACE keeps the owner and the grants (EXECUTE for fintrail_app only).
CREATE OR REPLACE FUNCTION fintrail.lock_wallets(ids bigint[]) RETURNS SETOF fintrail.wallets
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM fintrail.wallets WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
END
$fn$;
