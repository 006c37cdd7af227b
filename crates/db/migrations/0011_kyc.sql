-- KYC: cases, their transition history and the triggers that enforce the state machine
-- against every client, including raw SQL with the application role's credentials.

-- ---------------------------------------------------------------------------------------------
-- KYC cases: the database's own copy of the transition table, written here by hand. The Rust
-- table lives in fintrail-domain (state_machine.rs); the API crate's exhaustive test proves the
-- two agree on every (from, to) pair.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE fintrail.kyc_allowed_transitions (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
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

CREATE TABLE fintrail.kyc_cases (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id        bigint      NOT NULL REFERENCES fintrail.customers (id),
    state              text        NOT NULL CHECK (state IN ('started', 'documents_submitted', 'in_review', 'approved', 'rejected', 'needs_resubmission', 'expired')),
    version            integer     NOT NULL DEFAULT 0,
    -- The history row that produced the current state (NULL while in the initial state).
    last_transition_id bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fintrail.kyc_case_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       bigint      NOT NULL REFERENCES fintrail.kyc_cases (id),
    from_state text        NOT NULL,
    to_state   text        NOT NULL,
    actor      text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    reason     text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    request_id text        CHECK (length(request_id) <= 64),
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Set by the trigger (never by the client): binds the row to the transaction that wrote it.
    txid       xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX ON fintrail.kyc_case_transitions (case_id, id);

-- New records start in the initial state, with version 0 and no history.
CREATE FUNCTION fintrail.kyc_case_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.state IS DISTINCT FROM 'started' THEN
        RAISE EXCEPTION 'kyc_cases: a new record must start in state started, not %', NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    NEW.version := 0;
    NEW.last_transition_id := NULL;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER kyc_case_before_insert BEFORE INSERT ON fintrail.kyc_cases
    FOR EACH ROW EXECUTE FUNCTION fintrail.kyc_case_before_insert();

-- A state change must (1) be in the table and (2) consume the history row written for exactly
-- this change in this transaction (ids only grow, so a history row is consumed at most once).
CREATE FUNCTION fintrail.kyc_case_before_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    h fintrail.kyc_case_transitions%ROWTYPE;
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.customer_id IS DISTINCT FROM OLD.customer_id
    THEN
        RAISE EXCEPTION 'kyc_cases %: identity columns are immutable', OLD.id USING ERRCODE = 'FT002';
    END IF;
    IF NEW.state IS NOT DISTINCT FROM OLD.state THEN
        IF NEW.last_transition_id IS DISTINCT FROM OLD.last_transition_id THEN
            RAISE EXCEPTION 'kyc_cases %: last_transition_id changes only with the state', OLD.id
                USING ERRCODE = 'FT002';
        END IF;
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.kyc_allowed_transitions a
                   WHERE a.from_state = OLD.state AND a.to_state = NEW.state) THEN
        RAISE EXCEPTION 'kyc_cases %: transition % -> % is not allowed', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    SELECT * INTO h FROM fintrail.kyc_case_transitions WHERE id = NEW.last_transition_id;
    IF NOT FOUND
       OR h.case_id <> OLD.id
       OR h.from_state <> OLD.state
       OR h.to_state <> NEW.state
       OR h.txid <> pg_current_xact_id()
       OR (OLD.last_transition_id IS NOT NULL AND h.id <= OLD.last_transition_id) THEN
        RAISE EXCEPTION 'kyc_cases %: state change % -> % without its history row in this transaction',
            OLD.id, OLD.state, NEW.state USING ERRCODE = 'FT003';
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER kyc_case_before_update BEFORE UPDATE ON fintrail.kyc_cases
    FOR EACH ROW EXECUTE FUNCTION fintrail.kyc_case_before_update();

CREATE FUNCTION fintrail.kyc_case_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%: % is not allowed (history is kept forever)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER kyc_case_no_delete BEFORE DELETE ON fintrail.kyc_cases
    FOR EACH ROW EXECUTE FUNCTION fintrail.kyc_case_refuse();
CREATE TRIGGER kyc_case_no_truncate BEFORE TRUNCATE ON fintrail.kyc_cases
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.kyc_case_refuse();
CREATE TRIGGER kyc_case_history_no_change BEFORE UPDATE OR DELETE ON fintrail.kyc_case_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.kyc_case_refuse();
CREATE TRIGGER kyc_case_history_no_truncate BEFORE TRUNCATE ON fintrail.kyc_case_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.kyc_case_refuse();

-- A history row is accepted only for an allowed transition from the record's current state,
-- and only when the previous history row has been consumed (rows and state changes alternate).
-- The row lock serializes concurrent transitions of one record: the loser re-reads the new
-- state and is refused.
CREATE FUNCTION fintrail.kyc_case_history_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    cur fintrail.kyc_cases%ROWTYPE;
BEGIN
    SELECT * INTO cur FROM fintrail.kyc_cases WHERE id = NEW.case_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'kyc_case_transitions: no kyc_cases row %', NEW.case_id USING ERRCODE = 'FT005';
    END IF;
    IF NEW.from_state IS DISTINCT FROM cur.state THEN
        RAISE EXCEPTION 'kyc_cases %: is in state %, not %', cur.id, cur.state, NEW.from_state
            USING ERRCODE = 'FT001';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.kyc_allowed_transitions a
                   WHERE a.from_state = NEW.from_state AND a.to_state = NEW.to_state) THEN
        RAISE EXCEPTION 'kyc_cases %: transition % -> % is not allowed', cur.id, NEW.from_state, NEW.to_state
            USING ERRCODE = 'FT001';
    END IF;
    IF EXISTS (SELECT 1 FROM fintrail.kyc_case_transitions t
               WHERE t.case_id = cur.id AND t.id > coalesce(cur.last_transition_id, 0)) THEN
        RAISE EXCEPTION 'kyc_cases %: a previous history row was not applied', cur.id
            USING ERRCODE = 'FT003';
    END IF;
    NEW.txid := pg_current_xact_id();
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER kyc_case_history_before_insert BEFORE INSERT ON fintrail.kyc_case_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.kyc_case_history_before_insert();

-- At commit, every history row must have been applied to its record (no history without the
-- state change it claims).
CREATE FUNCTION fintrail.kyc_case_history_applied() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fintrail.kyc_cases c
                   WHERE c.id = NEW.case_id AND c.last_transition_id >= NEW.id) THEN
        RAISE EXCEPTION 'kyc_case_transitions %: recorded but never applied to kyc_cases %', NEW.id, NEW.case_id
            USING ERRCODE = 'FT003';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER kyc_case_history_applied AFTER INSERT ON fintrail.kyc_case_transitions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fintrail.kyc_case_history_applied();

ALTER TABLE fintrail.kyc_cases ADD FOREIGN KEY (last_transition_id) REFERENCES fintrail.kyc_case_transitions (id);

-- The application role: read, create, and change exactly the state columns.
GRANT SELECT ON fintrail.kyc_allowed_transitions TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.kyc_cases TO fintrail_app;
GRANT UPDATE (state, last_transition_id, version, updated_at) ON fintrail.kyc_cases TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.kyc_case_transitions TO fintrail_app;
