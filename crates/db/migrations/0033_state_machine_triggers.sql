-- One generic set of state-machine triggers for every record that moves through a state
-- machine with a history table (today: kyc_cases / kyc_case_transitions and organizations /
-- organization_transitions). It replaces the two hand-written near-copies of migrations 0011
-- and 0012, which stay as they are (applied migrations are never edited) but whose trigger
-- functions are dropped here.
--
-- What differs between machines is passed as trigger arguments, so the rules are written once:
--   record table:  sm_record_before_insert(initial_state)
--                  sm_record_before_update(history_table, allowed_table, history_fk, immutable_column...)
--   history table: sm_history_before_insert(record_table, allowed_table, history_fk)
--                  sm_history_applied(record_table, history_fk)   (deferred: checked at commit)
--   both:          sm_refuse()   (no DELETE, no TRUNCATE; history rows never change)
-- Table names reach EXECUTE only through format('%I'), from these trigger definitions (owner
-- DDL), never from a client. Error codes and messages are those of 0011/0012:
-- FT001 not allowed, FT002 immutable column, FT003 history/state coupling, FT004 refused
-- operation, FT005 unknown record.

CREATE FUNCTION fintrail.sm_record_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.state IS DISTINCT FROM TG_ARGV[0] THEN
        RAISE EXCEPTION '%: a new record must start in state %, not %', TG_TABLE_NAME, TG_ARGV[0], NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    NEW.version := 0;
    NEW.last_transition_id := NULL;
    NEW.created_at := now();
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

-- A state change must (1) be in the allowed table and (2) consume the history row written for
-- exactly this change in this transaction (ids only grow, so a history row is consumed at most
-- once). Identity columns (id, created_at and the machine's own) never change.
CREATE FUNCTION fintrail.sm_record_before_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    history_table text := TG_ARGV[0];
    allowed_table text := TG_ARGV[1];
    history_fk    text := TG_ARGV[2];
    old_row       jsonb := to_jsonb(OLD);
    new_row       jsonb := to_jsonb(NEW);
    col           text;
    allowed       boolean;
    h             jsonb;
BEGIN
    FOREACH col IN ARRAY ARRAY['id', 'created_at'] || TG_ARGV[3:TG_NARGS - 1] LOOP
        IF new_row -> col IS DISTINCT FROM old_row -> col THEN
            RAISE EXCEPTION '% %: identity columns are immutable', TG_TABLE_NAME, OLD.id USING ERRCODE = 'FT002';
        END IF;
    END LOOP;
    IF NEW.state IS NOT DISTINCT FROM OLD.state THEN
        IF NEW.last_transition_id IS DISTINCT FROM OLD.last_transition_id THEN
            RAISE EXCEPTION '% %: last_transition_id changes only with the state', TG_TABLE_NAME, OLD.id
                USING ERRCODE = 'FT002';
        END IF;
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM fintrail.%I a WHERE a.from_state = $1 AND a.to_state = $2)',
                   allowed_table)
        INTO allowed USING OLD.state, NEW.state;
    IF NOT allowed THEN
        RAISE EXCEPTION '% %: transition % -> % is not allowed', TG_TABLE_NAME, OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'FT001';
    END IF;
    EXECUTE format('SELECT to_jsonb(h) FROM fintrail.%I h WHERE h.id = $1', history_table)
        INTO h USING NEW.last_transition_id;
    IF h IS NULL
       OR (h ->> history_fk)::bigint <> OLD.id
       OR h ->> 'from_state' <> OLD.state
       OR h ->> 'to_state' <> NEW.state
       OR (h ->> 'txid')::xid8 <> pg_current_xact_id()
       OR (OLD.last_transition_id IS NOT NULL AND (h ->> 'id')::bigint <= OLD.last_transition_id) THEN
        RAISE EXCEPTION '% %: state change % -> % without its history row in this transaction',
            TG_TABLE_NAME, OLD.id, OLD.state, NEW.state USING ERRCODE = 'FT003';
    END IF;
    NEW.version := OLD.version + 1;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

CREATE FUNCTION fintrail.sm_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%: % is not allowed (history is kept forever)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'FT004';
END
$fn$;

-- A history row is accepted only for an allowed transition from the record's current state,
-- and only when the previous history row has been consumed (rows and state changes alternate).
-- The row lock serializes concurrent transitions of one record: the loser re-reads the new
-- state and is refused.
CREATE FUNCTION fintrail.sm_history_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    record_table  text := TG_ARGV[0];
    allowed_table text := TG_ARGV[1];
    history_fk    text := TG_ARGV[2];
    record_id     bigint := (to_jsonb(NEW) ->> history_fk)::bigint;
    cur_state     text;
    cur_last      bigint;
    ok            boolean;
BEGIN
    -- `state` is NOT NULL, so a NULL here means no such record (EXECUTE does not set FOUND).
    EXECUTE format('SELECT state, last_transition_id FROM fintrail.%I WHERE id = $1 FOR UPDATE', record_table)
        INTO cur_state, cur_last USING record_id;
    IF cur_state IS NULL THEN
        RAISE EXCEPTION '%: no % row %', TG_TABLE_NAME, record_table, record_id USING ERRCODE = 'FT005';
    END IF;
    IF NEW.from_state IS DISTINCT FROM cur_state THEN
        RAISE EXCEPTION '% %: is in state %, not %', record_table, record_id, cur_state, NEW.from_state
            USING ERRCODE = 'FT001';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM fintrail.%I a WHERE a.from_state = $1 AND a.to_state = $2)',
                   allowed_table)
        INTO ok USING NEW.from_state, NEW.to_state;
    IF NOT ok THEN
        RAISE EXCEPTION '% %: transition % -> % is not allowed', record_table, record_id, NEW.from_state, NEW.to_state
            USING ERRCODE = 'FT001';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM fintrail.%I t WHERE t.%I = $1 AND t.id > $2)',
                   TG_TABLE_NAME, history_fk)
        INTO ok USING record_id, coalesce(cur_last, 0);
    IF ok THEN
        RAISE EXCEPTION '% %: a previous history row was not applied', record_table, record_id
            USING ERRCODE = 'FT003';
    END IF;
    NEW.txid := pg_current_xact_id();
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$fn$;

-- At commit, every history row must have been applied to its record (no history without the
-- state change it claims).
CREATE FUNCTION fintrail.sm_history_applied() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    record_table text := TG_ARGV[0];
    record_id    bigint := (to_jsonb(NEW) ->> TG_ARGV[1])::bigint;
    applied      boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM fintrail.%I c WHERE c.id = $1 AND c.last_transition_id >= $2)',
                   record_table)
        INTO applied USING record_id, NEW.id;
    IF NOT applied THEN
        RAISE EXCEPTION '% %: recorded but never applied to % %', TG_TABLE_NAME, NEW.id, record_table, record_id
            USING ERRCODE = 'FT003';
    END IF;
    RETURN NULL;
END
$fn$;

-- The KYC machine.
DROP TRIGGER kyc_case_before_insert ON fintrail.kyc_cases;
DROP TRIGGER kyc_case_before_update ON fintrail.kyc_cases;
DROP TRIGGER kyc_case_no_delete ON fintrail.kyc_cases;
DROP TRIGGER kyc_case_no_truncate ON fintrail.kyc_cases;
DROP TRIGGER kyc_case_history_no_change ON fintrail.kyc_case_transitions;
DROP TRIGGER kyc_case_history_no_truncate ON fintrail.kyc_case_transitions;
DROP TRIGGER kyc_case_history_before_insert ON fintrail.kyc_case_transitions;
DROP TRIGGER kyc_case_history_applied ON fintrail.kyc_case_transitions;
DROP FUNCTION fintrail.kyc_case_before_insert();
DROP FUNCTION fintrail.kyc_case_before_update();
DROP FUNCTION fintrail.kyc_case_refuse();
DROP FUNCTION fintrail.kyc_case_history_before_insert();
DROP FUNCTION fintrail.kyc_case_history_applied();

CREATE TRIGGER kyc_case_before_insert BEFORE INSERT ON fintrail.kyc_cases
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_record_before_insert('started');
CREATE TRIGGER kyc_case_before_update BEFORE UPDATE ON fintrail.kyc_cases
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_record_before_update(
        'kyc_case_transitions', 'kyc_allowed_transitions', 'case_id', 'customer_id');
CREATE TRIGGER kyc_case_no_delete BEFORE DELETE ON fintrail.kyc_cases
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER kyc_case_no_truncate BEFORE TRUNCATE ON fintrail.kyc_cases
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER kyc_case_history_no_change BEFORE UPDATE OR DELETE ON fintrail.kyc_case_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER kyc_case_history_no_truncate BEFORE TRUNCATE ON fintrail.kyc_case_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER kyc_case_history_before_insert BEFORE INSERT ON fintrail.kyc_case_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_history_before_insert('kyc_cases', 'kyc_allowed_transitions', 'case_id');
CREATE CONSTRAINT TRIGGER kyc_case_history_applied AFTER INSERT ON fintrail.kyc_case_transitions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_history_applied('kyc_cases', 'case_id');

-- The KYB (organization screening) machine.
DROP TRIGGER organization_before_insert ON fintrail.organizations;
DROP TRIGGER organization_before_update ON fintrail.organizations;
DROP TRIGGER organization_no_delete ON fintrail.organizations;
DROP TRIGGER organization_no_truncate ON fintrail.organizations;
DROP TRIGGER organization_history_no_change ON fintrail.organization_transitions;
DROP TRIGGER organization_history_no_truncate ON fintrail.organization_transitions;
DROP TRIGGER organization_history_before_insert ON fintrail.organization_transitions;
DROP TRIGGER organization_history_applied ON fintrail.organization_transitions;
DROP FUNCTION fintrail.organization_before_insert();
DROP FUNCTION fintrail.organization_before_update();
DROP FUNCTION fintrail.organization_refuse();
DROP FUNCTION fintrail.organization_history_before_insert();
DROP FUNCTION fintrail.organization_history_applied();

CREATE TRIGGER organization_before_insert BEFORE INSERT ON fintrail.organizations
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_record_before_insert('registered');
CREATE TRIGGER organization_before_update BEFORE UPDATE ON fintrail.organizations
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_record_before_update(
        'organization_transitions', 'organization_allowed_transitions', 'organization_id',
        'legal_name', 'registration_number', 'country');
CREATE TRIGGER organization_no_delete BEFORE DELETE ON fintrail.organizations
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER organization_no_truncate BEFORE TRUNCATE ON fintrail.organizations
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER organization_history_no_change BEFORE UPDATE OR DELETE ON fintrail.organization_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER organization_history_no_truncate BEFORE TRUNCATE ON fintrail.organization_transitions
    FOR EACH STATEMENT EXECUTE FUNCTION fintrail.sm_refuse();
CREATE TRIGGER organization_history_before_insert BEFORE INSERT ON fintrail.organization_transitions
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_history_before_insert(
        'organizations', 'organization_allowed_transitions', 'organization_id');
CREATE CONSTRAINT TRIGGER organization_history_applied AFTER INSERT ON fintrail.organization_transitions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fintrail.sm_history_applied('organizations', 'organization_id');
