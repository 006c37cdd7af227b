-- The double-entry ledger: wallets, transfers, entries, holds, idempotency keys.
--
-- Defense in depth (the Rust side, fintrail-domain ledger.rs, decides first; this refuses):
--  * the application role cannot write entries or balances at all: it inserts a transfer row,
--    and a trigger owned by the owner writes the two entries (-amount, +amount) and moves the
--    balances. Entries therefore always come in balanced pairs, and a balance only ever
--    changes together with its entries;
--  * a CHECK on wallets keeps `balance - held >= floor` (floor 0 for customers and
--    organizations, none for system accounts);
--  * transfers and entries are immutable (UPDATE, DELETE, TRUNCATE refused, even for the owner);
--  * a reversal mirrors its original exactly and exists at most once (UNIQUE);
--  * a wallet opens only for an approved KYC case or a cleared organization.
-- Amounts are bigint minor units, never numeric/float; sums are numeric (no overflow) and cast
-- back to bigint, which raises on overflow.

CREATE TABLE fintrail.wallets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('customer', 'organization', 'system')),
    customer_id     bigint      REFERENCES fintrail.customers (id),
    organization_id bigint      REFERENCES fintrail.organizations (id),
    system_name     text        CHECK (system_name IN ('external_funding', 'settlement')),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- NULL: no floor (system accounts may go negative by design).
    floor_minor     bigint,
    balance_minor   bigint      NOT NULL DEFAULT 0,
    held_minor      bigint      NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'customer') = (customer_id IS NOT NULL)),
    CHECK ((kind = 'organization') = (organization_id IS NOT NULL)),
    CHECK ((kind = 'system') = (system_name IS NOT NULL)),
    CHECK ((kind = 'system') = (floor_minor IS NULL)),
    CONSTRAINT wallets_floor CHECK (floor_minor IS NULL OR balance_minor::numeric - held_minor >= floor_minor)
);
CREATE UNIQUE INDEX wallets_one_per_customer_currency ON fintrail.wallets (customer_id, currency) WHERE kind = 'customer';
CREATE UNIQUE INDEX wallets_one_per_org_currency ON fintrail.wallets (organization_id, currency) WHERE kind = 'organization';
CREATE UNIQUE INDEX wallets_one_system_per_currency ON fintrail.wallets (system_name, currency) WHERE kind = 'system';

CREATE TABLE fintrail.holds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    debit_wallet_id bigint      NOT NULL REFERENCES fintrail.wallets (id),
    credit_wallet_id bigint     NOT NULL REFERENCES fintrail.wallets (id),
    amount_minor    bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 1000000000000000),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    posted_minor    bigint,
    actor           text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    settled_at      timestamptz,
    CHECK (debit_wallet_id <> credit_wallet_id),
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '30 days'),
    CHECK ((status = 'posted') = (posted_minor IS NOT NULL)),
    CHECK (posted_minor IS NULL OR posted_minor BETWEEN 1 AND amount_minor),
    CHECK ((status = 'pending') = (settled_at IS NULL))
);
CREATE INDEX holds_pending_expiry ON fintrail.holds (expires_at) WHERE status = 'pending';

CREATE SEQUENCE fintrail.transfers_id_seq AS bigint;
CREATE TABLE fintrail.transfers (
    id                   bigint      PRIMARY KEY DEFAULT nextval('fintrail.transfers_id_seq'),
    kind                 text        NOT NULL CHECK (kind IN ('transfer', 'deposit', 'withdrawal', 'reversal', 'hold_post')),
    debit_wallet_id      bigint      NOT NULL REFERENCES fintrail.wallets (id),
    credit_wallet_id     bigint      NOT NULL REFERENCES fintrail.wallets (id),
    amount_minor         bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 1000000000000000),
    currency             text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reverses_transfer_id bigint      UNIQUE REFERENCES fintrail.transfers (id),
    hold_id              bigint      UNIQUE REFERENCES fintrail.holds (id),
    actor                text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    idempotency_key      text        CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    request_id           text        CHECK (length(request_id) <= 64),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_wallet_id <> credit_wallet_id),
    CHECK ((kind = 'reversal') = (reverses_transfer_id IS NOT NULL)),
    CHECK ((kind = 'hold_post') = (hold_id IS NOT NULL))
);
ALTER SEQUENCE fintrail.transfers_id_seq OWNED BY fintrail.transfers.id;
CREATE INDEX transfers_idempotency ON fintrail.transfers (actor, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE fintrail.entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id  bigint      NOT NULL REFERENCES fintrail.transfers (id),
    wallet_id    bigint      NOT NULL REFERENCES fintrail.wallets (id),
    -- Signed: negative debit, positive credit.
    amount_minor bigint      NOT NULL CHECK (amount_minor <> 0),
    currency     text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The wallet's running balance after this entry (statements read it; never recomputed).
    balance_after_minor bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX entries_wallet ON fintrail.entries (wallet_id, id);
CREATE INDEX entries_transfer ON fintrail.entries (transfer_id);

-- Idempotency: one row per (principal, key) for `kept` time; the stored response is replayed.
CREATE TABLE fintrail.idempotency_keys (
    principal    text        NOT NULL CHECK (length(principal) BETWEEN 1 AND 200),
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    request_hash bytea       NOT NULL CHECK (length(request_hash) = 32),
    status_code  integer     NOT NULL CHECK (status_code BETWEEN 200 AND 299),
    response     jsonb       NOT NULL,
    transfer_id  bigint      REFERENCES fintrail.transfers (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (principal, key),
    CHECK (expires_at > created_at)
);
CREATE INDEX idempotency_keys_expiry ON fintrail.idempotency_keys (expires_at);

-- ---------------------------------------------------------------------------------------------
-- Wallets: opened with a zero balance and the floor of their kind, for an approved KYC case or
-- a cleared organization only; identity immutable; balances move only inside ledger triggers.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION fintrail.wallets_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.balance_minor := 0;
    NEW.held_minor := 0;
    NEW.created_at := now();
    NEW.floor_minor := CASE WHEN NEW.kind = 'system' THEN NULL ELSE 0 END;
    IF NEW.kind = 'customer' AND NOT EXISTS (
        SELECT 1 FROM fintrail.kyc_cases k WHERE k.customer_id = NEW.customer_id AND k.state = 'approved') THEN
        RAISE EXCEPTION 'wallets: customer % has no approved KYC case', NEW.customer_id USING ERRCODE = 'FT010';
    END IF;
    IF NEW.kind = 'organization' AND NOT EXISTS (
        SELECT 1 FROM fintrail.organizations o WHERE o.id = NEW.organization_id AND o.state = 'cleared') THEN
        RAISE EXCEPTION 'wallets: organization % is not cleared', NEW.organization_id USING ERRCODE = 'FT010';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER wallets_before_insert BEFORE INSERT ON fintrail.wallets
    FOR EACH ROW EXECUTE FUNCTION fintrail.wallets_before_insert();

CREATE FUNCTION fintrail.wallets_before_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF (NEW.id, NEW.kind, NEW.customer_id, NEW.organization_id, NEW.system_name, NEW.currency, NEW.floor_minor, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.kind, OLD.customer_id, OLD.organization_id, OLD.system_name, OLD.currency, OLD.floor_minor, OLD.created_at) THEN
        RAISE EXCEPTION 'wallets %: only balances change', OLD.id USING ERRCODE = 'FT011';
    END IF;
    -- Depth 1 is a direct UPDATE by a client; the ledger triggers below run at depth >= 2.
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'wallets %: balances change only through transfers and holds', OLD.id USING ERRCODE = 'FT011';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER wallets_before_update BEFORE UPDATE ON fintrail.wallets
    FOR EACH ROW EXECUTE FUNCTION fintrail.wallets_before_update();

CREATE FUNCTION fintrail.ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%: % is not allowed (the ledger is append-only)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER wallets_no_delete BEFORE DELETE ON fintrail.wallets
    FOR EACH ROW EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER wallets_no_truncate BEFORE TRUNCATE ON fintrail.wallets
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON fintrail.transfers
    FOR EACH ROW EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON fintrail.transfers
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER entries_immutable BEFORE UPDATE OR DELETE ON fintrail.entries
    FOR EACH ROW EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON fintrail.entries
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER holds_no_delete BEFORE DELETE ON fintrail.holds
    FOR EACH ROW EXECUTE FUNCTION fintrail.ledger_refuse();
CREATE TRIGGER holds_no_truncate BEFORE TRUNCATE ON fintrail.holds
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.ledger_refuse();

-- Entries are written only by the transfers trigger (which runs at depth >= 1).
CREATE FUNCTION fintrail.entries_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'entries: written only with their transfer' USING ERRCODE = 'FT012';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER entries_before_insert BEFORE INSERT ON fintrail.entries
    FOR EACH ROW EXECUTE FUNCTION fintrail.entries_before_insert();

-- ---------------------------------------------------------------------------------------------
-- Transfers: one statement-level trigger per INSERT (a whole batch at once) checks the rules,
-- writes the entries in transfer order and moves each touched balance once.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION fintrail.transfers_post() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
DECLARE
    bad record;
BEGIN
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
    -- holds the balance from before this statement: it is updated below).
    INSERT INTO fintrail.entries (transfer_id, wallet_id, amount_minor, currency, balance_after_minor, created_at)
    SELECT nt.id, s.wallet_id, s.amount_minor, nt.currency,
           (w.balance_minor + sum(s.amount_minor) OVER (PARTITION BY s.wallet_id ORDER BY nt.id, s.side))::bigint,
           nt.created_at
      FROM nt CROSS JOIN LATERAL (VALUES (0, nt.debit_wallet_id, -nt.amount_minor), (1, nt.credit_wallet_id, nt.amount_minor))
           AS s (side, wallet_id, amount_minor)
      JOIN fintrail.wallets w ON w.id = s.wallet_id
     ORDER BY nt.id, s.side;

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
CREATE TRIGGER transfers_post AFTER INSERT ON fintrail.transfers
    REFERENCING NEW TABLE AS nt FOR EACH STATEMENT EXECUTE FUNCTION fintrail.transfers_post();

-- ---------------------------------------------------------------------------------------------
-- Holds: creating one reserves the amount on the debit wallet (held_minor, under the floor
-- CHECK); leaving `pending` (posted, voided, expired) releases it. Only pending holds change.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION fintrail.holds_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.status <> 'pending' OR NEW.posted_minor IS NOT NULL OR NEW.settled_at IS NOT NULL THEN
        RAISE EXCEPTION 'holds: a new hold is pending' USING ERRCODE = 'FT016';
    END IF;
    NEW.created_at := now();
    IF EXISTS (SELECT 1 FROM fintrail.wallets w WHERE w.id IN (NEW.debit_wallet_id, NEW.credit_wallet_id)
               AND (w.currency <> NEW.currency OR w.kind = 'system')) THEN
        RAISE EXCEPTION 'holds: wallets do not fit (currency %)', NEW.currency USING ERRCODE = 'FT013';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER holds_before_insert BEFORE INSERT ON fintrail.holds
    FOR EACH ROW EXECUTE FUNCTION fintrail.holds_before_insert();

CREATE FUNCTION fintrail.holds_before_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF (NEW.id, NEW.debit_wallet_id, NEW.credit_wallet_id, NEW.amount_minor, NEW.currency, NEW.actor, NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.debit_wallet_id, OLD.credit_wallet_id, OLD.amount_minor, OLD.currency, OLD.actor, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'holds %: only the status changes', OLD.id USING ERRCODE = 'FT016';
    END IF;
    IF OLD.status <> 'pending' OR NEW.status = 'pending' THEN
        RAISE EXCEPTION 'holds %: % -> % is not allowed', OLD.id, OLD.status, NEW.status USING ERRCODE = 'FT016';
    END IF;
    IF NEW.status IN ('posted', 'voided') AND now() > OLD.expires_at THEN
        RAISE EXCEPTION 'holds %: expired at %', OLD.id, OLD.expires_at USING ERRCODE = 'FT017';
    END IF;
    IF NEW.status = 'expired' AND now() <= OLD.expires_at THEN
        RAISE EXCEPTION 'holds %: not expired before %', OLD.id, OLD.expires_at USING ERRCODE = 'FT016';
    END IF;
    NEW.settled_at := now();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER holds_before_update BEFORE UPDATE ON fintrail.holds
    FOR EACH ROW EXECUTE FUNCTION fintrail.holds_before_update();

CREATE FUNCTION fintrail.holds_reserve() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE fintrail.wallets SET held_minor = held_minor + NEW.amount_minor WHERE id = NEW.debit_wallet_id;
    ELSE
        UPDATE fintrail.wallets SET held_minor = held_minor - OLD.amount_minor WHERE id = OLD.debit_wallet_id;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER holds_reserve AFTER INSERT OR UPDATE ON fintrail.holds
    FOR EACH ROW EXECUTE FUNCTION fintrail.holds_reserve();

-- ---------------------------------------------------------------------------------------------
-- Idempotency keys: never updated; deleted only once expired (the purge job).
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION fintrail.idempotency_keys_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.expires_at < now() THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'idempotency_keys: % is not allowed before expiry', TG_OP USING ERRCODE = 'FT018';
END
$fn$;
CREATE TRIGGER idempotency_keys_guard BEFORE UPDATE OR DELETE ON fintrail.idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION fintrail.idempotency_keys_guard();


-- Row locks without UPDATE rights: `SELECT ... FOR UPDATE` needs the UPDATE privilege, which the
-- application role must not have on wallets. This owner function takes the locks for it, in id
-- order (every writer locks in this one order: no deadlock), and returns the locked rows.
CREATE FUNCTION fintrail.lock_wallets(ids bigint[]) RETURNS SETOF fintrail.wallets
LANGUAGE sql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
    SELECT * FROM fintrail.wallets WHERE id = ANY(ids) ORDER BY id FOR UPDATE
$fn$;
REVOKE ALL ON FUNCTION fintrail.lock_wallets(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fintrail.lock_wallets(bigint[]) TO fintrail_app;

-- ---------------------------------------------------------------------------------------------
-- The application role: exactly the DML the API needs. No UPDATE or DELETE on wallets,
-- transfers or entries; no INSERT on entries (the trigger writes them).
-- ---------------------------------------------------------------------------------------------
GRANT SELECT ON fintrail.wallets TO fintrail_app;
GRANT INSERT (kind, customer_id, organization_id, system_name, currency) ON fintrail.wallets TO fintrail_app;
GRANT SELECT ON fintrail.entries TO fintrail_app;
GRANT SELECT ON fintrail.transfers TO fintrail_app;
GRANT INSERT (id, kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, reverses_transfer_id, hold_id, actor,
              idempotency_key, request_id) ON fintrail.transfers TO fintrail_app;
GRANT USAGE ON SEQUENCE fintrail.transfers_id_seq TO fintrail_app;
GRANT SELECT ON fintrail.holds TO fintrail_app;
GRANT INSERT (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at) ON fintrail.holds TO fintrail_app;
GRANT UPDATE (status, posted_minor) ON fintrail.holds TO fintrail_app;
-- created_at is not granted: the database stamps rows (transfers, idempotency keys) itself.
GRANT SELECT, DELETE ON fintrail.idempotency_keys TO fintrail_app;
GRANT INSERT (principal, key, request_hash, status_code, response, transfer_id, expires_at)
    ON fintrail.idempotency_keys TO fintrail_app;
