-- One definition of the state-machine triggers for every record that moves through a state
-- machine with a history table (today: kyc_cases / kyc_case_transitions and organizations /
-- organization_transitions). It replaces the bodies of the two hand-written near-copies of
-- migrations 0011 and 0012 (those files stay as they are: applied migrations are never
-- edited).
--
-- `fintrail.sm_install` holds the rules once, as a template, and instantiates them per machine
-- with that machine's tables, columns and initial state substituted (format's %I / %L): the
-- generated functions contain static SQL only. Why generate rather than pass trigger arguments
-- to one function: a generic function needs EXECUTE for every lookup, which PostgreSQL plans
-- afresh on every call; measured with `fintrail bench audit`, that cost ~20% of KYB transition
-- throughput. Generated functions keep cached plans.
--
-- The functions keep the names 0011/0012 gave them (CREATE OR REPLACE), so the triggers bound
-- there stay bound. Error codes and messages are those of 0011/0012: FT001 not allowed, FT002
-- immutable column, FT003 history/state coupling, FT004 refused operation, FT005 unknown
-- record. A new machine is one `SELECT fintrail.sm_install(...)` plus its triggers.

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
