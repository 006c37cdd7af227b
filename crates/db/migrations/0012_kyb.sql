-- KYB: organizations, their screening history and the triggers that enforce the state
-- machine (including periodic re-screening) against every client.

-- ---------------------------------------------------------------------------------------------
-- KYB organizations (screening): the database's own copy of the transition table, written here by hand. The Rust
-- table lives in fintrail-domain (state_machine.rs); the API crate's exhaustive test proves the
-- two agree on every (from, to) pair.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE fintrail.organization_allowed_transitions (
    from_state text NOT NULL,
    to_state   text NOT NULL,
    PRIMARY KEY (from_state, to_state)
);
INSERT INTO fintrail.organization_allowed_transitions (from_state, to_state) VALUES
    ('registered', 'screening'),
    ('screening', 'clear'),
    ('screening', 'potential_match'),
    ('clear', 'screening'),
    ('cleared', 'screening'),
    ('potential_match', 'manual_review'),
    ('manual_review', 'cleared'),
    ('manual_review', 'blocked');

CREATE TABLE fintrail.organizations (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    legal_name          text        NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 300),
    registration_number text        NOT NULL CHECK (length(registration_number) BETWEEN 1 AND 64),
    country             text        NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    state              text        NOT NULL CHECK (state IN ('registered', 'screening', 'clear', 'potential_match', 'manual_review', 'cleared', 'blocked')),
    version            integer     NOT NULL DEFAULT 0,
    -- The history row that produced the current state (NULL while in the initial state).
    last_transition_id bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fintrail.organization_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id       bigint      NOT NULL REFERENCES fintrail.organizations (id),
    from_state text        NOT NULL,
    to_state   text        NOT NULL,
    actor      text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    reason     text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
    request_id text        CHECK (length(request_id) <= 64),
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Set by the trigger (never by the client): binds the row to the transaction that wrote it.
    txid       xid8        NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX ON fintrail.organization_transitions (organization_id, id);

-- New records start in the initial state, with version 0 and no history.
CREATE FUNCTION fintrail.organization_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.state IS DISTINCT FROM 'registered' THEN
        RAISE EXCEPTION 'organizations: a new record must start in state registered, not %', NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    NEW.version := 0;
    NEW.last_transition_id := NULL;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER organization_before_insert BEFORE INSERT ON fintrail.organizations
    FOR EACH ROW EXECUTE FUNCTION fintrail.organization_before_insert();

-- A state change must (1) be in the table and (2) consume the history row written for exactly
-- this change in this transaction (ids only grow, so a history row is consumed at most once).
CREATE FUNCTION fintrail.organization_before_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    h fintrail.organization_transitions%ROWTYPE;
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.legal_name IS DISTINCT FROM OLD.legal_name
       OR NEW.registration_number IS DISTINCT FROM OLD.registration_number
       OR NEW.country IS DISTINCT FROM OLD.country
    THEN
        RAISE EXCEPTION 'organizations %: identity columns are immutable', OLD.id USING ERRCODE = 'FT002';
    END IF;
    IF NEW.state IS NOT DISTINCT FROM OLD.state THEN
        IF NEW.last_transition_id IS DISTINCT FROM OLD.last_transition_id THEN
            RAISE EXCEPTION 'organizations %: last_transition_id changes only with the state', OLD.id
                USING ERRCODE = 'FT002';
        END IF;
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.organization_allowed_transitions a
                   WHERE a.from_state = OLD.state AND a.to_state = NEW.state) THEN
        RAISE EXCEPTION 'organizations %: transition % -> % is not allowed', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    SELECT * INTO h FROM fintrail.organization_transitions WHERE id = NEW.last_transition_id;
    IF NOT FOUND
       OR h.organization_id <> OLD.id
       OR h.from_state <> OLD.state
       OR h.to_state <> NEW.state
       OR h.txid <> pg_current_xact_id()
       OR (OLD.last_transition_id IS NOT NULL AND h.id <= OLD.last_transition_id) THEN
        RAISE EXCEPTION 'organizations %: state change % -> % without its history row in this transaction',
            OLD.id, OLD.state, NEW.state USING ERRCODE = 'FT003';
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER organization_before_update BEFORE UPDATE ON fintrail.organizations
    FOR EACH ROW EXECUTE FUNCTION fintrail.organization_before_update();

CREATE FUNCTION fintrail.organization_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%: % is not allowed (history is kept forever)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER organization_no_delete BEFORE DELETE ON fintrail.organizations
    FOR EACH ROW EXECUTE FUNCTION fintrail.organization_refuse();
CREATE TRIGGER organization_no_truncate BEFORE TRUNCATE ON fintrail.organizations
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.organization_refuse();
CREATE TRIGGER organization_history_no_change BEFORE UPDATE OR DELETE ON fintrail.organization_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.organization_refuse();
CREATE TRIGGER organization_history_no_truncate BEFORE TRUNCATE ON fintrail.organization_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.organization_refuse();

-- A history row is accepted only for an allowed transition from the record's current state,
-- and only when the previous history row has been consumed (rows and state changes alternate).
-- The row lock serializes concurrent transitions of one record: the loser re-reads the new
-- state and is refused.
CREATE FUNCTION fintrail.organization_history_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    cur fintrail.organizations%ROWTYPE;
BEGIN
    SELECT * INTO cur FROM fintrail.organizations WHERE id = NEW.organization_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'organization_transitions: no organizations row %', NEW.organization_id USING ERRCODE = 'FT005';
    END IF;
    IF NEW.from_state IS DISTINCT FROM cur.state THEN
        RAISE EXCEPTION 'organizations %: is in state %, not %', cur.id, cur.state, NEW.from_state
            USING ERRCODE = 'FT001';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM fintrail.organization_allowed_transitions a
                   WHERE a.from_state = NEW.from_state AND a.to_state = NEW.to_state) THEN
        RAISE EXCEPTION 'organizations %: transition % -> % is not allowed', cur.id, NEW.from_state, NEW.to_state
            USING ERRCODE = 'FT001';
    END IF;
    IF EXISTS (SELECT 1 FROM fintrail.organization_transitions t
               WHERE t.organization_id = cur.id AND t.id > coalesce(cur.last_transition_id, 0)) THEN
        RAISE EXCEPTION 'organizations %: a previous history row was not applied', cur.id
            USING ERRCODE = 'FT003';
    END IF;
    NEW.txid := pg_current_xact_id();
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER organization_history_before_insert BEFORE INSERT ON fintrail.organization_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.organization_history_before_insert();

-- At commit, every history row must have been applied to its record (no history without the
-- state change it claims).
CREATE FUNCTION fintrail.organization_history_applied() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fintrail.organizations c
                   WHERE c.id = NEW.organization_id AND c.last_transition_id >= NEW.id) THEN
        RAISE EXCEPTION 'organization_transitions %: recorded but never applied to organizations %', NEW.id, NEW.organization_id
            USING ERRCODE = 'FT003';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER organization_history_applied AFTER INSERT ON fintrail.organization_transitions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fintrail.organization_history_applied();

ALTER TABLE fintrail.organizations ADD FOREIGN KEY (last_transition_id) REFERENCES fintrail.organization_transitions (id);

-- The application role: read, create, and change exactly the state columns.
GRANT SELECT ON fintrail.organization_allowed_transitions TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.organizations TO fintrail_app;
GRANT UPDATE (state, last_transition_id, version, updated_at) ON fintrail.organizations TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.organization_transitions TO fintrail_app;
