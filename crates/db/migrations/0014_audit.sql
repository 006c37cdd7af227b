-- The audit trail: append-only events, a hash chain written by a single sequencer after commit,
-- and signed checkpoints. See .notes/api.md for the design (commit order vs sequence order).

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
    after        text        CHECK (after IS NULL OR (length(after) <= 65536 AND after::jsonb IS NOT NULL))
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

-- Append-only, even for the owner: UPDATE and DELETE are refused unless the retention procedure
-- below is running (it sets a transaction-local flag and runs as the owner); TRUNCATE never.
CREATE FUNCTION fintrail.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('fintrail.audit_retention', true) = 'on'
       AND current_user = 'fintrail_owner' THEN
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

-- The retention procedure (operators only: the application role cannot execute it). Removes
-- events and links up to a signed checkpoint's seq and records that checkpoint as the anchor.
CREATE FUNCTION fintrail.audit_purge_through(checkpoint_id bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = fintrail, pg_temp AS $fn$
DECLARE
    cp fintrail.audit_checkpoints%ROWTYPE;
    n bigint;
BEGIN
    SELECT * INTO cp FROM fintrail.audit_checkpoints WHERE id = checkpoint_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit_purge_through: no checkpoint %', checkpoint_id USING ERRCODE = 'FT005';
    END IF;
    PERFORM set_config('fintrail.audit_retention', 'on', true);
    DELETE FROM fintrail.audit_events WHERE seq <= cp.seq;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM fintrail.audit_chain WHERE seq <= cp.seq;
    INSERT INTO fintrail.audit_retention (purged_through_seq, anchor_link) VALUES (cp.seq, cp.link);
    PERFORM set_config('fintrail.audit_retention', 'off', true);
    RETURN n;
END
$fn$;
REVOKE ALL ON FUNCTION fintrail.audit_purge_through(bigint) FROM PUBLIC;

GRANT SELECT, INSERT ON fintrail.audit_events TO fintrail_app;
GRANT USAGE ON SEQUENCE fintrail.audit_events_seq TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.audit_chain TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.audit_checkpoints TO fintrail_app;
GRANT SELECT ON fintrail.audit_retention TO fintrail_app;
