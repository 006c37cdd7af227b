-- run_as: admin
-- The baseline: on an empty database, the schema that migrations 0001 to 0042 built one after
-- the other, written once in its final form. Those migrations are retired (their SQL is in git
-- history; `fintrail_db::migrate::RETIRED` keeps their names and checksums, so a database that
-- applied them stays valid and runs nothing again). Why a baseline: the incremental files kept
-- superseded code forever (0011 and 0012 carried two hand-written near-copies of the
-- state-machine triggers that 0033 replaced), and every fresh database replayed it.
--
-- Sections say which retired migration each part comes from ("was 0036"): comments in the
-- code that cite a migration number find it here. `crates/db/tests/baseline.rs` proves that
-- this file and the retired migrations build the same schema, grants, data and roles.
--
-- Runs as the admin because it creates roles, grants on the database and hands the retention
-- procedure to `fintrail_retention`; everything else is created as the owner (SET LOCAL ROLE
-- below), so the owner owns it. One file, one transaction: a fresh database gets all of it or
-- nothing. Migrations after the baseline are numbered 0043 and above.

-- =============================================================================================
-- Roles (was 0001, 0034). As admin.
-- =============================================================================================
-- fintrail_owner      owns every object; NOLOGIN: reached only by migrations via SET ROLE.
-- fintrail_app        the API: only the DML granted below, table by table.
-- fintrail_replicator logical replication for `fintrail cdc`: SELECT only on published tables.
-- fintrail_sequencer  the audit chain's only writer (links and checkpoints).
-- fintrail_retention  NOLOGIN, no member: owns the retention procedure, the only deleter of
--                     the trail.
-- No role bypasses row security; none of the LOGIN roles owns what it writes.
-- Roles are cluster-wide, so creation is idempotent (many databases share one cluster in tests).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_owner') THEN
        CREATE ROLE fintrail_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_app') THEN
        CREATE ROLE fintrail_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_replicator') THEN
        CREATE ROLE fintrail_replicator LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_sequencer') THEN
        CREATE ROLE fintrail_sequencer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_retention') THEN
        CREATE ROLE fintrail_retention NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;

-- Re-assert the attributes even if the roles pre-existed (e.g. created by hand in production).
ALTER ROLE fintrail_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE fintrail_app NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_replicator REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_sequencer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_retention NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_app SET search_path = fintrail;
ALTER ROLE fintrail_replicator SET search_path = fintrail;
ALTER ROLE fintrail_owner SET search_path = fintrail;
ALTER ROLE fintrail_sequencer SET search_path = fintrail;

-- On Cloud SQL the admin is no superuser: it must be able to SET ROLE fintrail_owner, and be a
-- member of fintrail_retention to hand the retention procedure over (end of this file).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT fintrail_owner TO %I', current_user);
        EXECUTE format('GRANT fintrail_retention TO %I', current_user);
    END IF;
END
$$;

-- Nobody but the named roles may connect; nobody creates objects in public.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO fintrail_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO fintrail_app, fintrail_replicator', current_database());
    -- The owner creates publications (CDC) in this database.
    EXECUTE format('GRANT CREATE ON DATABASE %I TO fintrail_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO fintrail_sequencer', current_database());
END
$$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS fintrail AUTHORIZATION fintrail_owner;
REVOKE ALL ON SCHEMA fintrail FROM PUBLIC;
GRANT USAGE ON SCHEMA fintrail TO fintrail_app, fintrail_replicator;

-- Objects the owner creates later grant nothing to PUBLIC (functions default to EXECUTE for PUBLIC).
ALTER DEFAULT PRIVILEGES FOR ROLE fintrail_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE fintrail_owner IN SCHEMA fintrail REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE fintrail_owner IN SCHEMA fintrail REVOKE ALL ON SEQUENCES FROM PUBLIC;

-- Everything below is the owner's.
SET LOCAL ROLE fintrail_owner;

GRANT USAGE ON SCHEMA fintrail TO fintrail_sequencer, fintrail_retention;

-- HMAC-SHA256 for the retention procedure's signature check: pgcrypto (a trusted extension),
-- in a schema of its own so that `fintrail` holds only our objects.
CREATE SCHEMA fintrail_ext;
REVOKE ALL ON SCHEMA fintrail_ext FROM PUBLIC;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA fintrail_ext;
GRANT USAGE ON SCHEMA fintrail_ext TO fintrail_retention;

-- =============================================================================================
-- Identity (was 0010, 0035): customers and opaque bearer tokens (stored only as SHA-256
-- hashes). Roles and permissions are declared in Rust (fintrail-domain access.rs); the
-- database stores the role name with each token and never decides access itself.
-- =============================================================================================
CREATE TABLE fintrail.customers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    display_name text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    email        text        NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fintrail.api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        text        NOT NULL CHECK (role ~ '^[a-z_]{1,40}$'),
    customer_id bigint      REFERENCES fintrail.customers (id),
    label       text        NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    -- A customer token always names its customer; a staff token never does.
    CHECK ((role = 'customer') = (customer_id IS NOT NULL)),
    CHECK (expires_at > created_at)
);

-- Tokens are revoked, never un-revoked, re-scoped or deleted.
CREATE FUNCTION fintrail.api_tokens_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'api_tokens: DELETE is not allowed (revoke instead)' USING ERRCODE = 'FT004';
    END IF;
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'api_tokens %: already revoked', OLD.id USING ERRCODE = 'FT002';
    END IF;
    IF (NEW.id, NEW.token_hash, NEW.role, NEW.customer_id, NEW.label, NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.token_hash, OLD.role, OLD.customer_id, OLD.label, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'api_tokens %: only revoked_at may change', OLD.id USING ERRCODE = 'FT002';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER api_tokens_guard BEFORE UPDATE OR DELETE ON fintrail.api_tokens
    FOR EACH ROW EXECUTE FUNCTION fintrail.api_tokens_guard();


-- A token lives at most 30 days from its real creation time (`TOKEN_MAX_TTL_SECS` in the API).
-- NOT VALID as in the databases built before the baseline (the constraint was added to a table
-- with rows there), so that both builds are one schema; on an empty table it changes nothing.
ALTER TABLE fintrail.api_tokens
    ADD CONSTRAINT api_tokens_lifetime_max CHECK (expires_at <= created_at + interval '30 days') NOT VALID;

-- The application role never chooses an id or a defaulted timestamp (was 0035): INSERT is
-- column-level, so `OVERRIDING SYSTEM VALUE` or a back-dated `created_at` is refused (42501).
GRANT SELECT ON fintrail.customers TO fintrail_app;
GRANT INSERT (display_name, email) ON fintrail.customers TO fintrail_app;
GRANT SELECT ON fintrail.api_tokens TO fintrail_app;
GRANT INSERT (token_hash, role, customer_id, label, expires_at) ON fintrail.api_tokens TO fintrail_app;
GRANT UPDATE (revoked_at) ON fintrail.api_tokens TO fintrail_app;

-- =============================================================================================
-- State machines (was 0011, 0012, 0033): KYC cases and KYB organizations (screening, with
-- periodic re-screening), their transition history, and the triggers that enforce the machines
-- against every client, including raw SQL with the application role's credentials.
--
-- Each machine has a record table (its own columns, written out below), an allowed-transitions
-- table (the database's own copy of the Rust table in fintrail-domain state_machine.rs; the API
-- crate's exhaustive test proves the two agree on every (from, to) pair), and a history table
-- of the same shape for every machine. The rules are one template, `fintrail.sm_install`.
-- =============================================================================================
CREATE TABLE fintrail.kyc_cases (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id        bigint      NOT NULL REFERENCES fintrail.customers (id),
    state              text        NOT NULL CHECK (state IN ('started', 'documents_submitted', 'in_review', 'approved', 'rejected', 'needs_resubmission', 'expired')),
    version            integer     NOT NULL DEFAULT 0,
    -- The history row that produced the current state (NULL while in the initial state).
    last_transition_id bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fintrail.organizations (
    id                  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    legal_name          text        NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 300),
    registration_number text        NOT NULL CHECK (length(registration_number) BETWEEN 1 AND 64),
    country             text        NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    state               text        NOT NULL CHECK (state IN ('registered', 'screening', 'clear', 'potential_match', 'manual_review', 'cleared', 'blocked')),
    version             integer     NOT NULL DEFAULT 0,
    last_transition_id  bigint,     -- as for kyc_cases
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The allowed-transitions and history tables of one machine, and the triggers that bind the
-- functions `sm_install` generates. Why a loop: the two machines' tables and triggers are the
-- same but for their names, and written out twice they were the near-copies this baseline
-- retires. `txid` is set by the trigger (never by the client): it binds a history row to the
-- transaction that wrote it.
DO $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT * FROM (VALUES
        ('kyc_case', 'kyc_cases', 'kyc_case_transitions', 'kyc_allowed_transitions', 'case_id'),
        ('organization', 'organizations', 'organization_transitions', 'organization_allowed_transitions',
         'organization_id')) AS v (prefix, record_table, history_table, allowed_table, history_fk)
    LOOP
        EXECUTE format($f$
CREATE TABLE fintrail.%1$I (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
CREATE TABLE fintrail.%2$I (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    %3$I       bigint      NOT NULL REFERENCES fintrail.%4$I (id),
    from_state text        NOT NULL,
    to_state   text        NOT NULL,
    actor      text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    reason     text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    request_id text        CHECK (length(request_id) <= 64),
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    txid       xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX ON fintrail.%2$I (%3$I, id);
ALTER TABLE fintrail.%4$I ADD FOREIGN KEY (last_transition_id) REFERENCES fintrail.%2$I (id);
$f$, m.allowed_table, m.history_table, m.history_fk, m.record_table);
    END LOOP;
END
$$;

-- `fintrail.sm_install` holds the rules once, as a template, and instantiates them per machine
-- with that machine's tables, columns and initial state substituted (format's %I / %L): the
-- generated functions contain static SQL only. Why generate rather than pass trigger arguments
-- to one function: a generic function needs EXECUTE for every lookup, which PostgreSQL plans
-- afresh on every call; measured with `fintrail bench audit`, that cost ~20% of KYB transition
-- throughput. Generated functions keep cached plans. Error codes: FT001 not allowed, FT002
-- immutable column, FT003 history/state coupling, FT004 refused operation, FT005 unknown
-- record. A new machine is its record table, one more row in the loops around this function,
-- and one `SELECT fintrail.sm_install(...)`.
CREATE FUNCTION fintrail.sm_install(
    prefix            text,    -- function name prefix: kyc_case, organization
    record_table      text,
    history_table     text,
    allowed_table     text,
    history_fk        text,    -- the history table's column naming the record
    initial_state     text,
    identity_columns  text[]   -- besides id and created_at: columns that never change
) RETURNS void LANGUAGE plpgsql AS $install$
DECLARE
    identity_changed text;
BEGIN
    SELECT string_agg(format('NEW.%1$I IS DISTINCT FROM OLD.%1$I', c), ' OR ')
      INTO identity_changed
      FROM unnest(ARRAY['id', 'created_at'] || identity_columns) AS c;

    -- New records start in the initial state, with version 0 and no history.
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION fintrail.%1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.state IS DISTINCT FROM %3$L THEN
        RAISE EXCEPTION '%2$s: a new record must start in state %3$s, not %%', NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    NEW.version := 0;
    NEW.last_transition_id := NULL;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$$f$, prefix || '_before_insert', record_table, initial_state);

    -- A state change must (1) be in the allowed table and (2) consume the history row written
    -- for exactly this change in this transaction (ids only grow, so a history row is consumed
    -- at most once). Identity columns never change.
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION fintrail.%1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    h fintrail.%3$I%%ROWTYPE;
BEGIN
    IF %6$s THEN
        RAISE EXCEPTION '%2$s %%: identity columns are immutable', OLD.id USING ERRCODE = 'FT002';
    END IF;
    IF NEW.state IS NOT DISTINCT FROM OLD.state THEN
        IF NEW.last_transition_id IS DISTINCT FROM OLD.last_transition_id THEN
            RAISE EXCEPTION '%2$s %%: last_transition_id changes only with the state', OLD.id
                USING ERRCODE = 'FT002';
        END IF;
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.%4$I a WHERE a.from_state = OLD.state AND a.to_state = NEW.state) THEN
        RAISE EXCEPTION '%2$s %%: transition %% -> %% is not allowed', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    SELECT * INTO h FROM fintrail.%3$I WHERE id = NEW.last_transition_id;
    IF NOT FOUND
       OR h.%5$I <> OLD.id
       OR h.from_state <> OLD.state
       OR h.to_state <> NEW.state
       OR h.txid <> pg_current_xact_id()
       OR (OLD.last_transition_id IS NOT NULL AND h.id <= OLD.last_transition_id) THEN
        RAISE EXCEPTION '%2$s %%: state change %% -> %% without its history row in this transaction',
            OLD.id, OLD.state, NEW.state USING ERRCODE = 'FT003';
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$$f$, prefix || '_before_update', record_table, history_table, allowed_table, history_fk, identity_changed);

    -- No DELETE or TRUNCATE of records; history rows never change.
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION fintrail.%1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%%: %% is not allowed (history is kept forever)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FT004';
END
$fn$$f$, prefix || '_refuse');

    -- A history row is accepted only for an allowed transition from the record's current
    -- state, and only when the previous history row has been consumed (rows and state changes
    -- alternate). The row lock serializes concurrent transitions of one record: the loser
    -- re-reads the new state and is refused.
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION fintrail.%1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    cur fintrail.%2$I%%ROWTYPE;
BEGIN
    SELECT * INTO cur FROM fintrail.%2$I WHERE id = NEW.%5$I FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION '%3$s: no %2$s row %%', NEW.%5$I USING ERRCODE = 'FT005';
    END IF;
    IF NEW.from_state IS DISTINCT FROM cur.state THEN
        RAISE EXCEPTION '%2$s %%: is in state %%, not %%', cur.id, cur.state, NEW.from_state
            USING ERRCODE = 'FT001';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.%4$I a WHERE a.from_state = NEW.from_state AND a.to_state = NEW.to_state) THEN
        RAISE EXCEPTION '%2$s %%: transition %% -> %% is not allowed', cur.id, NEW.from_state, NEW.to_state
            USING ERRCODE = 'FT001';
    END IF;
    IF EXISTS (SELECT 1 FROM fintrail.%3$I t WHERE t.%5$I = cur.id AND t.id > coalesce(cur.last_transition_id, 0)) THEN
        RAISE EXCEPTION '%2$s %%: a previous history row was not applied', cur.id
            USING ERRCODE = 'FT003';
    END IF;
    NEW.txid := pg_current_xact_id();
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$fn$$f$, prefix || '_history_before_insert', record_table, history_table, allowed_table, history_fk);

    -- At commit, every history row must have been applied to its record (no history without
    -- the state change it claims).
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION fintrail.%1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fintrail.%2$I c WHERE c.id = NEW.%4$I AND c.last_transition_id >= NEW.id) THEN
        RAISE EXCEPTION '%3$s %%: recorded but never applied to %2$s %%', NEW.id, NEW.%4$I
            USING ERRCODE = 'FT003';
    END IF;
    RETURN NULL;
END
$fn$$f$, prefix || '_history_applied', record_table, history_table, history_fk);
END
$install$;


-- Owner DDL only: the application role never installs a machine.
REVOKE ALL ON FUNCTION fintrail.sm_install(text, text, text, text, text, text, text[]) FROM PUBLIC;

SELECT fintrail.sm_install('kyc_case', 'kyc_cases', 'kyc_case_transitions', 'kyc_allowed_transitions',
                           'case_id', 'started', ARRAY['customer_id']);
SELECT fintrail.sm_install('organization', 'organizations', 'organization_transitions',
                           'organization_allowed_transitions', 'organization_id', 'registered',
                           ARRAY['legal_name', 'registration_number', 'country']);

-- The triggers of each machine: records start in the initial state and change state only with
-- their history row; records are never deleted, history rows never change; a history row is
-- checked on insert and must be applied to its record by commit.
DO $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT * FROM (VALUES
        ('kyc_case', 'kyc_cases', 'kyc_case_transitions'),
        ('organization', 'organizations', 'organization_transitions')) AS v (prefix, record_table, history_table)
    LOOP
        EXECUTE format($f$
CREATE TRIGGER %1$I BEFORE INSERT ON fintrail.%5$I
    FOR EACH ROW EXECUTE FUNCTION fintrail.%1$I();
CREATE TRIGGER %2$I BEFORE UPDATE ON fintrail.%5$I
    FOR EACH ROW EXECUTE FUNCTION fintrail.%2$I();
CREATE TRIGGER %3$I BEFORE DELETE ON fintrail.%5$I
    FOR EACH ROW EXECUTE FUNCTION fintrail.%4$I();
CREATE TRIGGER %7$I BEFORE TRUNCATE ON fintrail.%5$I
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.%4$I();
CREATE TRIGGER %8$I BEFORE UPDATE OR DELETE ON fintrail.%6$I
    FOR EACH ROW EXECUTE FUNCTION fintrail.%4$I();
CREATE TRIGGER %9$I BEFORE TRUNCATE ON fintrail.%6$I
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.%4$I();
CREATE TRIGGER %10$I BEFORE INSERT ON fintrail.%6$I
    FOR EACH ROW EXECUTE FUNCTION fintrail.%10$I();
CREATE CONSTRAINT TRIGGER %11$I AFTER INSERT ON fintrail.%6$I
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fintrail.%11$I();
$f$, m.prefix || '_before_insert', m.prefix || '_before_update', m.prefix || '_no_delete', m.prefix || '_refuse',
     m.record_table, m.history_table, m.prefix || '_no_truncate', m.prefix || '_history_no_change',
     m.prefix || '_history_no_truncate', m.prefix || '_history_before_insert', m.prefix || '_history_applied');
    END LOOP;
END
$$;

-- The transition tables (the Rust copy: fintrail-domain state_machine.rs).
INSERT INTO fintrail.kyc_allowed_transitions (from_state, to_state) VALUES
    ('started', 'documents_submitted'),
    ('needs_resubmission', 'documents_submitted'),
    ('documents_submitted', 'in_review'),
    ('in_review', 'approved'),
    ('in_review', 'rejected'),
    ('in_review', 'needs_resubmission'),
    ('approved', 'expired'),
    ('started', 'expired'),
    ('needs_resubmission', 'expired');
INSERT INTO fintrail.organization_allowed_transitions (from_state, to_state) VALUES
    ('registered', 'screening'),
    ('screening', 'clear'),
    ('screening', 'potential_match'),
    ('clear', 'screening'),
    ('cleared', 'screening'),
    ('potential_match', 'manual_review'),
    ('manual_review', 'cleared'),
    ('manual_review', 'blocked');

-- The application role: read, create (never choosing an id, version or time: was 0035), and
-- move the state with its history row. `version` and `updated_at` are the triggers' to set.
GRANT SELECT ON fintrail.kyc_allowed_transitions TO fintrail_app;
GRANT SELECT ON fintrail.kyc_cases TO fintrail_app;
GRANT INSERT (customer_id, state) ON fintrail.kyc_cases TO fintrail_app;
GRANT UPDATE (state, last_transition_id) ON fintrail.kyc_cases TO fintrail_app;
GRANT SELECT ON fintrail.kyc_case_transitions TO fintrail_app;
GRANT INSERT (case_id, from_state, to_state, actor, reason, request_id) ON fintrail.kyc_case_transitions TO fintrail_app;
GRANT SELECT ON fintrail.organization_allowed_transitions TO fintrail_app;
GRANT SELECT ON fintrail.organizations TO fintrail_app;
GRANT INSERT (legal_name, registration_number, country, state) ON fintrail.organizations TO fintrail_app;
GRANT UPDATE (state, last_transition_id) ON fintrail.organizations TO fintrail_app;
GRANT SELECT ON fintrail.organization_transitions TO fintrail_app;
GRANT INSERT (organization_id, from_state, to_state, actor, reason, request_id)
    ON fintrail.organization_transitions TO fintrail_app;

-- =============================================================================================
-- Media (was 0013): user media (ID documents, selfies): metadata and content hash; the bytes
-- live in the object store (local directory or GCS). Rows are immutable.
-- =============================================================================================
CREATE TABLE fintrail.media_objects (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES fintrail.customers (id),
    kyc_case_id  bigint      NOT NULL REFERENCES fintrail.kyc_cases (id),
    kind         text        NOT NULL CHECK (kind IN ('id_document', 'selfie')),
    content_type text        NOT NULL CHECK (length(content_type) BETWEEN 1 AND 100),
    size_bytes   bigint      NOT NULL CHECK (size_bytes BETWEEN 1 AND 10485760),
    sha256       bytea       NOT NULL CHECK (length(sha256) = 32),
    storage_key  text        NOT NULL UNIQUE CHECK (storage_key ~ '^[a-z0-9/_-]{1,200}$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON fintrail.media_objects (kyc_case_id);

CREATE FUNCTION fintrail.media_objects_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'media_objects: % is not allowed (immutable)', TG_OP USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER media_objects_immutable BEFORE UPDATE OR DELETE ON fintrail.media_objects
    FOR EACH ROW EXECUTE FUNCTION fintrail.media_objects_refuse();

GRANT SELECT ON fintrail.media_objects TO fintrail_app;
GRANT INSERT (customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key)
    ON fintrail.media_objects TO fintrail_app;

-- =============================================================================================
-- The double-entry ledger (was 0030, 0031, 0032, 0035, 0038): wallets, transfers, entries,
-- holds, idempotency keys.
-- =============================================================================================
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


-- Entries reference their transfer and their wallet by construction, not by foreign key (was
-- 0032). Why this holds:
--  * an entry is written only by the `transfers_post` trigger (FT012 refuses any other insert,
--    even the owner's), from the rows of the statement's own transfers (`nt.id`) and their two
--    wallets, joined against `wallets`;
--  * those transfers' foreign keys to `wallets` are checked before it runs (row-level RI
--    triggers fire before the statement-level trigger), so the wallets exist;
--  * transfers and wallets can never be deleted or truncated (FT004, even for the owner), and
--    entries are immutable: a reference, once valid, stays valid;
--  * `fintrail ledger check` reports an entry without its transfer or wallet (`OrphanEntry`).
-- Why no foreign keys: each cost an SPI query and a row lock per entry, four per transfer,
-- inside the ledger's hottest statement (measured: ~13 % of a five-transfer batch INSERT,
-- 0.85 ms -> 0.74 ms). The foreign keys of `transfers` (to wallets, holds, reversed transfers)
-- and of `idempotency_keys` stay: the application writes those rows.
CREATE TABLE fintrail.entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id  bigint      NOT NULL,
    wallet_id    bigint      NOT NULL,
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

-- Transfers take pre-assigned ids (the ledger engine takes a batch of ids from the sequence
-- before it writes, so that audit events and idempotency rows can name them), but an id the
-- sequence has not issued yet is refused: it would collide with a later transfer (was 0035).
CREATE FUNCTION fintrail.transfers_id_issued() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.id < 1 OR NEW.id > coalesce(pg_sequence_last_value('fintrail.transfers_id_seq'), 0) THEN
        RAISE EXCEPTION 'transfers: id % was not issued by transfers_id_seq', NEW.id USING ERRCODE = 'FT021';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER transfers_id_issued BEFORE INSERT ON fintrail.transfers
    FOR EACH ROW EXECUTE FUNCTION fintrail.transfers_id_issued();

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

-- The running balance is computed under the wallet lock and respects the floor on every entry
-- (was 0038). Two statement-level triggers around `transfers_post`:
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

-- A hold is posted only together with its `hold_post` transfer of the posted amount (checked at
-- commit: the ledger writes the transfer after the status; was 0035). `fintrail ledger check`
-- proves the same after the fact.
CREATE FUNCTION fintrail.holds_posted_with_transfer() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fintrail.transfers t
                   WHERE t.hold_id = NEW.id AND t.kind = 'hold_post' AND t.amount_minor = NEW.posted_minor) THEN
        RAISE EXCEPTION 'holds %: posted without its hold_post transfer of %', NEW.id, NEW.posted_minor
            USING ERRCODE = 'FT022';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER holds_posted_with_transfer AFTER UPDATE OF status ON fintrail.holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'posted')
    EXECUTE FUNCTION fintrail.holds_posted_with_transfer();

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
-- PL/pgSQL, not SQL (was 0031): a SECURITY DEFINER SQL function with a SET clause is never
-- inlined and re-parses and re-plans its body on every call (once per batch, in the hot path);
-- PL/pgSQL keeps the plan for the session.
CREATE FUNCTION fintrail.lock_wallets(ids bigint[]) RETURNS SETOF fintrail.wallets
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM fintrail.wallets WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
END
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

-- =============================================================================================
-- Periodic jobs (was 0040; `fintrail jobs`, issue #15): one row per run, for `fintrail jobs
-- list` and for deciding which jobs are due. The audit trail holds the authoritative start/finish events
-- (job.started / job.finished / job.failed); this table is the cheap index over them.
--
-- A run is inserted as `running` and finished exactly once (`running` -> a final outcome); a
-- process killed mid-run leaves its row `running` for ever, which `jobs list` reports as
-- interrupted once no process holds the job's advisory lock. Nothing else changes a row.
-- =============================================================================================
CREATE TABLE fintrail.job_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text        NOT NULL CHECK (job ~ '^[a-z][a-z0-9-]{0,62}$'),
    actor       text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    trigger     text        NOT NULL CHECK (trigger IN ('cli', 'http', 'up')),
    dry_run     boolean     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text        NOT NULL DEFAULT 'running'
                            CHECK (outcome IN ('running', 'ok', 'partial', 'failed', 'busy')),
    counts      jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (length(counts::text) <= 4096),
    error       text        CHECK (length(error) <= 2000),
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX job_runs_by_job ON fintrail.job_runs (job, id DESC);

CREATE FUNCTION fintrail.job_runs_before_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.outcome <> 'running' OR NEW.finished_at IS NOT NULL THEN
            RAISE EXCEPTION 'job_runs: a run starts as running' USING ERRCODE = 'FT040';
        END IF;
        NEW.started_at := clock_timestamp();
        RETURN NEW;
    END IF;
    IF OLD.outcome <> 'running' OR NEW.outcome = 'running'
       OR (NEW.id, NEW.job, NEW.actor, NEW.trigger, NEW.dry_run, NEW.started_at)
          IS DISTINCT FROM (OLD.id, OLD.job, OLD.actor, OLD.trigger, OLD.dry_run, OLD.started_at) THEN
        RAISE EXCEPTION 'job_runs %: a run is finished once, and only its outcome changes', OLD.id
            USING ERRCODE = 'FT040';
    END IF;
    NEW.finished_at := clock_timestamp();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER job_runs_before_change BEFORE INSERT OR UPDATE ON fintrail.job_runs
    FOR EACH ROW EXECUTE FUNCTION fintrail.job_runs_before_change();

GRANT SELECT ON fintrail.job_runs TO fintrail_app;
GRANT INSERT (job, actor, trigger, dry_run) ON fintrail.job_runs TO fintrail_app;
GRANT UPDATE (outcome, counts, error, finished_at) ON fintrail.job_runs TO fintrail_app;

-- =============================================================================================
-- The compliance console (was 0042, issue #19): browser sessions, and the indexes its list
-- pages page through (bounded pages, keyset pagination: every page is an index range, never an
-- OFFSET).
-- =============================================================================================
-- A console session: a staff bearer token exchanged for a cookie at the login form. Only the
-- SHA-256 of the cookie's 256-bit secret is stored (as for tokens). A session is valid while
-- it has not expired AND its token is neither revoked nor expired: the console joins
-- api_tokens on every request, so revoking the token ends every session made from it at once.
-- The application never chooses the times: the trigger stamps them (as the database does
-- for every other table). Logout deletes the row; the trail keeps the login and logout events.
CREATE TABLE fintrail.console_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash bytea       NOT NULL UNIQUE CHECK (length(session_hash) = 32),
    token_id     bigint      NOT NULL REFERENCES fintrail.api_tokens (id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '8 hours')
);
CREATE INDEX console_sessions_expiry ON fintrail.console_sessions (expires_at);

CREATE FUNCTION fintrail.console_sessions_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.created_at := now();
    NEW.expires_at := now() + interval '8 hours';
    RETURN NEW;
END
$fn$;
CREATE TRIGGER console_sessions_before_insert BEFORE INSERT ON fintrail.console_sessions
    FOR EACH ROW EXECUTE FUNCTION fintrail.console_sessions_before_insert();

CREATE FUNCTION fintrail.console_sessions_immutable() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'console_sessions: UPDATE is not allowed (log out and in again)' USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER console_sessions_immutable BEFORE UPDATE ON fintrail.console_sessions
    FOR EACH ROW EXECUTE FUNCTION fintrail.console_sessions_immutable();

GRANT SELECT, DELETE ON fintrail.console_sessions TO fintrail_app;
GRANT INSERT (session_hash, token_id) ON fintrail.console_sessions TO fintrail_app;

-- Review queues: open cases / organizations, oldest waiting first (or last), keyset on
-- (updated_at, id). Partial: the queue predicate is the index's, whatever the table's size.
CREATE INDEX kyc_cases_review_queue ON fintrail.kyc_cases (updated_at, id)
    WHERE state IN ('documents_submitted', 'in_review');
CREATE INDEX organizations_review_queue ON fintrail.organizations (updated_at, id)
    WHERE state IN ('potential_match', 'manual_review');

-- =============================================================================================
-- The audit trail (was 0014, 0034, 0036, 0037, 0042): append-only events, a hash chain written
-- by a single sequencer after commit, and signed checkpoints.
--
-- The trust boundary: the chain belongs to the sequencer (`fintrail_sequencer` is the only role
-- that may INSERT links and checkpoints); retention runs only through a signed checkpoint, as
-- `fintrail_retention`, a NOLOGIN role no session is a member of. What this cannot prevent:
-- DDL by the owner or a superuser (DISABLE TRIGGER, replacing these functions). That is
-- detected, not prevented: by the checkpoint files outside the database, which `audit verify`
-- reads by default (ARCHITECTURE.md, "What the database cannot prevent").
-- =============================================================================================
CREATE SEQUENCE fintrail.audit_events_seq AS bigint;

CREATE TABLE fintrail.audit_events (
    seq          bigint      PRIMARY KEY,
    at           timestamptz NOT NULL,
    -- The writing transaction: assigned before the sequence number (see the trigger), so the
    -- sequencer can tell when a gap in `seq` can no longer be filled.
    txid         xid8        NOT NULL,
    actor        text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    on_behalf_of text        CHECK (length(on_behalf_of) <= 200),
    action       text        NOT NULL CHECK (action ~ '^[a-z_.]{1,64}$'),
    subject      text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    permission   text        CHECK (permission ~ '^[a-z_.]{1,64}$'),
    allowed      boolean     NOT NULL,
    request_id   text        CHECK (length(request_id) <= 64),
    -- JSON as text, exactly as written (compact, keys sorted by the writer): the chain hashes
    -- these bytes, and verification reads them without jsonb's output conversion (which was
    -- 70% of the server's cost of streaming the trail). The CHECK still refuses non-JSON.
    before       text        CHECK (before IS NULL OR (length(before) <= 65536 AND before::jsonb IS NOT NULL)),
    after        text        CHECK (after IS NULL OR (length(after) <= 65536 AND after::jsonb IS NOT NULL)),
    -- The bearer token of the request, for the actor check below; always NULL once stored.
    credential   text        CHECK (credential IS NULL)
);

-- The writer never chooses seq, time or txid. The transaction id is taken first (assigning
-- one if needed), then the sequence number: any transaction holding an uncommitted seq
-- therefore already has an xid, visible in every later snapshot's in-progress list.
CREATE FUNCTION fintrail.audit_events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.txid := pg_current_xact_id();
    NEW.seq := nextval('fintrail.audit_events_seq');
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER audit_events_before_insert BEFORE INSERT ON fintrail.audit_events
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_events_before_insert();

-- One link per chained event: SHA-256 over the previous link and the event's canonical
-- encoding (fintrail-domain audit.rs). No foreign key: a deleted event must stay detectable.
CREATE TABLE fintrail.audit_chain (
    seq        bigint      PRIMARY KEY,
    link       bytea       NOT NULL CHECK (length(link) = 32),
    chained_at timestamptz NOT NULL DEFAULT now()
);

-- Signed checkpoints (HMAC-SHA256 with a key under FINTRAIL_HOME/keys); also written to files.
CREATE TABLE fintrail.audit_checkpoints (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq        bigint      NOT NULL,
    link       bytea       NOT NULL CHECK (length(link) = 32),
    key_id     text        NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    signature  bytea       NOT NULL CHECK (length(signature) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The documented retention procedure's record: events up to `purged_through_seq` were removed
-- on purpose; verification resumes from `anchor_link` (the signed checkpoint at that seq).
CREATE TABLE fintrail.audit_retention (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purged_through_seq bigint      NOT NULL,
    anchor_link        bytea       NOT NULL CHECK (length(anchor_link) = 32),
    at                 timestamptz NOT NULL DEFAULT now()
);

-- Append-only, even for the owner: only the retention procedure deletes, and only events and
-- links. It runs as `fintrail_retention` (SECURITY DEFINER, owned by that role), the only way
-- `current_user` is that role inside this trigger. TRUNCATE never.
CREATE FUNCTION fintrail.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_user = 'fintrail_retention'
       AND TG_TABLE_NAME IN ('audit_events', 'audit_chain') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '%: % is not allowed (append-only audit trail)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON fintrail.audit_events
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_append_only();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON fintrail.audit_chain
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON fintrail.audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_append_only();

CREATE FUNCTION fintrail.audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%: TRUNCATE is not allowed (append-only audit trail)', TG_TABLE_NAME
        USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON fintrail.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.audit_no_truncate();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON fintrail.audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.audit_no_truncate();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON fintrail.audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.audit_no_truncate();
CREATE TRIGGER audit_retention_append_only BEFORE UPDATE OR DELETE ON fintrail.audit_retention
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_no_truncate();
CREATE TRIGGER audit_retention_no_truncate BEFORE TRUNCATE ON fintrail.audit_retention
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.audit_no_truncate();

-- A retention anchor is written by the retention procedure only.
CREATE FUNCTION fintrail.audit_retention_insert_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF current_user <> 'fintrail_retention' THEN
        RAISE EXCEPTION 'audit_retention: anchors are written only by audit_purge_through (not by %)', current_user
            USING ERRCODE = 'FT004';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER audit_retention_insert_guard BEFORE INSERT ON fintrail.audit_retention
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_retention_insert_guard();


-- The retention procedure: removes events and links up to a checkpoint's seq, and records that
-- checkpoint as the verification anchor, only if the checkpoint is signed by `checkpoint_key`
-- (the same HMAC-SHA256 as crates/audit checkpoint.rs: domain ‖ seq as 8 big-endian bytes ‖
-- link; key id = hex of the first 8 bytes of SHA-256(key)) and its link is the stored chain's.
CREATE FUNCTION fintrail.audit_purge_through(checkpoint_id bigint, checkpoint_key bytea) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
DECLARE
    cp fintrail.audit_checkpoints%ROWTYPE;
    purged bigint;
    n bigint;
BEGIN
    SELECT * INTO cp FROM fintrail.audit_checkpoints WHERE id = checkpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_purge_through: no checkpoint %', checkpoint_id USING ERRCODE = 'FT005';
    END IF;
    IF checkpoint_key IS NULL OR length(checkpoint_key) <> 32 THEN
        RAISE EXCEPTION 'audit_purge_through: the checkpoint key is 32 bytes' USING ERRCODE = 'FT006';
    END IF;
    IF encode(substring(sha256(checkpoint_key) FROM 1 FOR 8), 'hex') <> cp.key_id THEN
        RAISE EXCEPTION 'audit_purge_through: checkpoint % is signed by key %, not by the key given', checkpoint_id, cp.key_id
            USING ERRCODE = 'FT006';
    END IF;
    IF fintrail_ext.hmac(convert_to('fintrail.audit.checkpoint.v1', 'UTF8') || '\x00'::bytea || int8send(cp.seq) || cp.link,
                         checkpoint_key, 'sha256') <> cp.signature THEN
        RAISE EXCEPTION 'audit_purge_through: checkpoint % has an invalid signature', checkpoint_id
            USING ERRCODE = 'FT006';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.audit_chain WHERE seq = cp.seq AND link = cp.link) THEN
        RAISE EXCEPTION 'audit_purge_through: checkpoint % (seq %) is not on the stored chain', checkpoint_id, cp.seq
            USING ERRCODE = 'FT006';
    END IF;
    SELECT coalesce(max(purged_through_seq), 0) INTO purged FROM fintrail.audit_retention;
    IF cp.seq <= purged THEN
        RAISE EXCEPTION 'audit_purge_through: events through % are already purged', purged USING ERRCODE = 'FT006';
    END IF;
    DELETE FROM fintrail.audit_events WHERE seq <= cp.seq;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM fintrail.audit_chain WHERE seq <= cp.seq;
    INSERT INTO fintrail.audit_retention (purged_through_seq, anchor_link) VALUES (cp.seq, cp.link);
    RETURN n;
END
$fn$;
REVOKE ALL ON FUNCTION fintrail.audit_purge_through(bigint, bytea) FROM PUBLIC;

GRANT SELECT, INSERT ON fintrail.audit_events TO fintrail_app;
GRANT USAGE ON SEQUENCE fintrail.audit_events_seq TO fintrail_app;
GRANT SELECT ON fintrail.audit_chain TO fintrail_app;
GRANT SELECT ON fintrail.audit_checkpoints TO fintrail_app;
GRANT SELECT ON fintrail.audit_retention TO fintrail_app;
-- The chain and the checkpoints: the sequencer writes, everyone else reads.
GRANT SELECT ON fintrail.audit_events, fintrail.audit_retention TO fintrail_sequencer;
GRANT SELECT, INSERT ON fintrail.audit_chain, fintrail.audit_checkpoints TO fintrail_sequencer;
-- What the retention procedure touches, and nothing else.
GRANT SELECT, DELETE ON fintrail.audit_events, fintrail.audit_chain TO fintrail_retention;
GRANT SELECT ON fintrail.audit_checkpoints, fintrail.audit_retention TO fintrail_retention;
GRANT INSERT ON fintrail.audit_retention TO fintrail_retention;

-- The console's audit viewer (was 0042): newest first, keyset on seq, filtered by actor,
-- subject or action (each an index range in seq order; an action filter walks the seq index: each extra index on the
-- trail is paid by every audited write); a time window pages on (at, seq) instead (exact, and a window far
-- in the past is an index range rather than a walk back from the newest event). A page costs
-- its rows, not the trail's size.
CREATE INDEX audit_events_by_actor ON fintrail.audit_events (actor, seq);
CREATE INDEX audit_events_by_subject ON fintrail.audit_events (subject, seq);
CREATE INDEX audit_events_by_time ON fintrail.audit_events (at, seq);

-- Every audit event names an actor the database can check (was 0037; issue #16, items 2 and 4).
--
-- The trail proved integrity, not authenticity: the app credential could write an event naming
-- any staff member or customer. Now an event written by a `fintrail_app` session that names a
-- person (`staff:<token id>:<label>`, `customer:<id>`) must present, in its `credential`
-- column, the bearer token the request was made with. The insert trigger hashes it, finds the
-- live token (not expired; not revoked before this transaction) and requires the actor to be
-- exactly that token's actor. Then it clears the column: the bearer is never stored (a CHECK
-- holds it NULL), so it is neither in the table, nor in the WAL, nor replicated.
--
-- Other actors a `fintrail_app` session may write, none of which names a person:
-- * `signed_url:<key id>:token:<id>`: a signed-URL redemption, while the issuing token lives;
-- * `system:<name>`: the platform itself (periodic jobs `system:job:<name>`, the ledger);
-- * `anonymous:...` and `oidc:...`, only on refusals (`allowed = false`): nobody authenticated.
-- A token is issued (`token.issued`) by a credentialed actor only: minting one with the app
-- credential alone is refused; operators issue tokens from an administrative session.
--
-- Sessions of other roles (the owner's migrations, the administrator's `fintrail token create`,
-- demo seeding) are not checked: they are outside what the trail can prevent (ARCHITECTURE.md,
-- "trust boundary"). `session_user`, not `current_user`: a session cannot change it.
--
-- Error FT031 (`actor_unverified`).

-- The actor a credential proves, or NULL: the live token whose hash it is, as the API names
-- its holder (`Principal::actor`), or a console session's secret, while the session and its
-- token live (the session proves its staff member's actor like the bearer it was made from).
-- One place to answer it, so that later kinds of credential extend this function and not the
-- trigger.
CREATE FUNCTION fintrail.credential_holder(p_credential text) RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT CASE WHEN k.customer_id IS NOT NULL THEN 'customer:' || k.customer_id
                ELSE 'staff:' || k.id || ':' || k.label END
      FROM fintrail.api_tokens k
     WHERE k.token_hash = sha256(convert_to(p_credential, 'UTF8'))
       AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true)
    UNION ALL
    SELECT 'staff:' || k.id || ':' || k.label
      FROM fintrail.console_sessions s JOIN fintrail.api_tokens k ON k.id = s.token_id
     WHERE s.session_hash = sha256(convert_to(p_credential, 'UTF8')) AND s.expires_at > now()
       AND k.customer_id IS NULL AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true)
    LIMIT 1
$fn$;
GRANT EXECUTE ON FUNCTION fintrail.credential_holder(text) TO fintrail_app;

CREATE FUNCTION fintrail.audit_events_actor_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    holder text;
BEGIN
    IF session_user::text <> 'fintrail_app' THEN
        NEW.credential := NULL;
        RETURN NEW;
    END IF;
    IF NEW.actor ~ '^(staff|customer):' OR NEW.action = 'token.issued' THEN
        IF NEW.credential IS NULL OR length(NEW.credential) > 200 THEN
            RAISE EXCEPTION 'audit_events: actor % needs the bearer token of its request', NEW.actor
                USING ERRCODE = 'FT031';
        END IF;
        holder := fintrail.credential_holder(NEW.credential);
        IF holder IS NULL THEN
            RAISE EXCEPTION 'audit_events: actor %: the presented token is unknown, expired or revoked', NEW.actor
                USING ERRCODE = 'FT031';
        END IF;
        IF NEW.actor IS DISTINCT FROM holder THEN
            RAISE EXCEPTION 'audit_events: actor % is not the holder of the presented token', NEW.actor
                USING ERRCODE = 'FT031';
        END IF;
    ELSIF NEW.actor ~ '^signed_url:[0-9a-f]{1,16}:token:[0-9]{1,19}$' THEN
        IF NOT EXISTS (SELECT 1 FROM fintrail.api_tokens k
                       WHERE k.id = substring(NEW.actor FROM ':token:([0-9]+)$')::bigint
                         AND (k.revoked_at IS NULL OR k.revoked_at >= now())) THEN
            RAISE EXCEPTION 'audit_events: actor %: the issuing token is unknown or revoked', NEW.actor
                USING ERRCODE = 'FT031';
        END IF;
    ELSIF NEW.actor ~ '^system:[a-z0-9_.:-]{1,100}$' THEN
        NULL;
    ELSIF NEW.actor ~ '^(anonymous|oidc):' AND NOT NEW.allowed THEN
        NULL;
    ELSE
        RAISE EXCEPTION 'audit_events: actor % is not one the database can check', NEW.actor
            USING ERRCODE = 'FT031';
    END IF;
    NEW.credential := NULL;
    RETURN NEW;
END
$fn$;
-- Fires before `audit_events_before_insert` (triggers fire in name order), so a refused event
-- takes no sequence number.
CREATE TRIGGER audit_events_actor_check BEFORE INSERT ON fintrail.audit_events
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_events_actor_check();

-- =============================================================================================
-- No change without its audit event (was 0036; issue #16, item 1): the database refuses to commit a
-- transfer, a hold change, a KYC/KYB case or transition, a token issue or revocation, a media
-- registration, a customer or a customer/organization wallet unless the same transaction wrote
-- an audit event naming it as subject with a matching action.
--
-- "The same transaction" is `audit_events.txid = pg_current_xact_id()`: the insert trigger sets
-- `txid` itself (above), so a writer cannot borrow another transaction's event. The index below
-- makes each check one probe; it is on (txid, subject), not on a hot row, so concurrent writers
-- do not serialise on it.
--
-- Two shapes, one rule:
-- * Transfers (the hot path, group-committed in batches) are checked once per INSERT statement,
--   over its transition table: the engine appends a batch's events before its transfers (the
--   ids are pre-assigned), so one anti-join proves the whole batch. Cheaper than one deferred
--   trigger call per row, which the ledger's throughput budget cannot afford.
-- * Everything else is checked by a deferred constraint trigger per row, at commit, so the
--   writer may append the event after the row whose id it names.
--
-- Error FT030 (`audit_event_missing`): the change is refused and nothing of the transaction is
-- kept. Documented limit: the owner (DDL) can disable these triggers; the checkpoint files
-- outside the database are what detects what it then does (ARCHITECTURE.md, "trust boundary").
-- =============================================================================================
CREATE INDEX audit_events_txid_subject ON fintrail.audit_events (txid, subject);

-- The subject and the accepted actions of one changed row, per table.
CREATE FUNCTION fintrail.audit_coupling_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    v_subject text;
    v_actions text[];
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'holds' THEN
        v_subject := 'hold:' || NEW.id;
        v_actions := CASE WHEN TG_OP = 'INSERT' THEN ARRAY['ledger.hold.created']
                        ELSE ARRAY['ledger.hold.' || NEW.status] END;
    WHEN 'kyc_cases' THEN
        v_subject := 'kyc_case:' || NEW.id;
        v_actions := ARRAY['kyc.case.created'];
    WHEN 'kyc_case_transitions' THEN
        v_subject := 'kyc_case:' || NEW.case_id;
        v_actions := ARRAY['kyc.case.transitioned', 'kyc.case.created'];
    WHEN 'organizations' THEN
        v_subject := 'organization:' || NEW.id;
        v_actions := ARRAY['kyb.organization.created'];
    WHEN 'organization_transitions' THEN
        v_subject := 'organization:' || NEW.organization_id;
        v_actions := ARRAY['kyb.organization.transitioned', 'kyb.organization.created'];
    WHEN 'api_tokens' THEN
        v_subject := 'token:' || NEW.id;
        v_actions := CASE WHEN TG_OP = 'INSERT' THEN ARRAY['token.issued'] ELSE ARRAY['token.revoked'] END;
    WHEN 'media_objects' THEN
        v_subject := 'media:' || NEW.id;
        v_actions := ARRAY['media.uploaded'];
    WHEN 'customers' THEN
        v_subject := 'customer:' || NEW.id;
        v_actions := ARRAY['customer.created'];
    WHEN 'wallets' THEN
        v_subject := 'wallet:' || NEW.id;
        v_actions := ARRAY['ledger.wallet.opened'];
    END CASE;
    -- Inline, not a helper function: trigger functions need no EXECUTE grant, helpers would.
    IF NOT EXISTS (SELECT 1 FROM fintrail.audit_events e
                   WHERE e.txid = pg_current_xact_id() AND e.subject = v_subject AND e.action = ANY (v_actions)) THEN
        RAISE EXCEPTION '%: % of % without its audit event (%) in the same transaction',
            TG_TABLE_NAME, lower(TG_OP), v_subject, array_to_string(v_actions, ' or ')
            USING ERRCODE = 'FT030';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE CONSTRAINT TRIGGER holds_audit_coupled AFTER INSERT ON fintrail.holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER holds_status_audit_coupled AFTER UPDATE OF status ON fintrail.holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER kyc_cases_audit_coupled AFTER INSERT ON fintrail.kyc_cases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER kyc_case_transitions_audit_coupled AFTER INSERT ON fintrail.kyc_case_transitions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER organizations_audit_coupled AFTER INSERT ON fintrail.organizations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER organization_transitions_audit_coupled AFTER INSERT ON fintrail.organization_transitions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER api_tokens_audit_coupled AFTER INSERT ON fintrail.api_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER api_tokens_revoke_audit_coupled AFTER UPDATE OF revoked_at ON fintrail.api_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER media_objects_audit_coupled AFTER INSERT ON fintrail.media_objects
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER customers_audit_coupled AFTER INSERT ON fintrail.customers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
-- System wallets are created by migrations, outside any request: nobody opens them.
CREATE CONSTRAINT TRIGGER wallets_audit_coupled AFTER INSERT ON fintrail.wallets
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.kind <> 'system')
    EXECUTE FUNCTION fintrail.audit_coupling_check();

-- Transfers: per statement, the events first. A hold's posting is recorded on the hold.
CREATE FUNCTION fintrail.transfers_audit_coupled() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    missing text;
BEGIN
    SELECT n.subject INTO missing
    FROM (SELECT CASE WHEN t.kind = 'hold_post' THEN 'hold:' || t.hold_id ELSE 'transfer:' || t.id END AS subject,
                 CASE t.kind WHEN 'hold_post' THEN 'ledger.hold.posted' ELSE 'ledger.' || t.kind || '.posted' END AS action
          FROM new_transfers t) n
    WHERE NOT EXISTS (SELECT 1 FROM fintrail.audit_events e
                      WHERE e.txid = pg_current_xact_id() AND e.subject = n.subject AND e.action = n.action)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers: insert of % without its audit event, written before it in the same transaction', missing
            USING ERRCODE = 'FT030';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER transfers_audit_coupled AFTER INSERT ON fintrail.transfers
    REFERENCING NEW TABLE AS new_transfers FOR EACH STATEMENT EXECUTE FUNCTION fintrail.transfers_audit_coupled();

-- =============================================================================================
-- Hand the retention procedure to its role. As admin again.
-- =============================================================================================
RESET ROLE;
-- A trusted extension's functions belong to the bootstrap superuser, not to the owner: the
-- admin grants the one the procedure calls.
GRANT EXECUTE ON FUNCTION fintrail_ext.hmac(bytea, bytea, text) TO fintrail_retention;
ALTER FUNCTION fintrail.audit_purge_through(bigint, bytea) OWNER TO fintrail_retention;
-- Operators run retention through the owner (the migrations' role), never the app.
GRANT EXECUTE ON FUNCTION fintrail.audit_purge_through(bigint, bytea) TO fintrail_owner;
