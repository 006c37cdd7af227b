-- run_as: admin
-- The audit trail's trust boundary (issue #16, items 3 and 8):
--
-- * The chain belongs to the sequencer. `fintrail_sequencer` (LOGIN) is the only role that may
--   INSERT links and checkpoints; the app role loses INSERT on both, so an app credential can no
--   longer write a link for a future sequence number (which the sequencer would adopt as its
--   head) nor a checkpoint under an unknown key (which made `audit verify` exit 2 for ever).
-- * Retention only through a signed checkpoint. `audit_purge_through` now takes the checkpoint
--   key, checks the checkpoint's HMAC signature and that it lies on the stored chain, and runs
--   as `fintrail_retention`, a NOLOGIN role no session is a member of. Only that role may DELETE
--   from the trail or INSERT a retention anchor: a session flag unlocks nothing any more.
--   `audit verify` checks every anchor against a signed checkpoint (crates/audit verify.rs).
--
-- What this cannot prevent: DDL by the owner or a superuser (DISABLE TRIGGER, replacing these
-- functions). That is detected, not prevented: by the checkpoint files outside the database,
-- which `audit verify` reads by default (ARCHITECTURE.md, "What the database cannot prevent").
--
-- Runs as the admin because it creates roles and hands a function to `fintrail_retention`; the
-- objects themselves are created as the owner (SET LOCAL ROLE below).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_sequencer') THEN
        CREATE ROLE fintrail_sequencer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_retention') THEN
        CREATE ROLE fintrail_retention NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;
ALTER ROLE fintrail_sequencer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_retention NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_sequencer SET search_path = fintrail;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO fintrail_sequencer', current_database());
    -- On Cloud SQL the admin is no superuser: it needs membership to hand the function over.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT fintrail_retention TO %I', current_user);
    END IF;
END
$$;

SET LOCAL ROLE fintrail_owner;

GRANT USAGE ON SCHEMA fintrail TO fintrail_sequencer, fintrail_retention;

-- The chain and the checkpoints: the sequencer writes, everyone else reads.
REVOKE INSERT ON fintrail.audit_chain, fintrail.audit_checkpoints FROM fintrail_app;
GRANT SELECT ON fintrail.audit_events, fintrail.audit_retention TO fintrail_sequencer;
GRANT SELECT, INSERT ON fintrail.audit_chain, fintrail.audit_checkpoints TO fintrail_sequencer;

-- HMAC-SHA256 for the purge procedure's signature check: pgcrypto (a trusted extension), in a
-- schema of its own so that `fintrail` holds only our objects.
CREATE SCHEMA fintrail_ext;
REVOKE ALL ON SCHEMA fintrail_ext FROM PUBLIC;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA fintrail_ext;

-- Append-only: only the retention procedure deletes, and only events and links. It runs as
-- `fintrail_retention` (SECURITY DEFINER, owned by that role), the only way `current_user` is
-- that role inside this trigger.
CREATE OR REPLACE FUNCTION fintrail.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
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

DROP FUNCTION fintrail.audit_purge_through(bigint);

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

-- What the retention procedure touches, and nothing else.
GRANT SELECT, DELETE ON fintrail.audit_events, fintrail.audit_chain TO fintrail_retention;
GRANT SELECT ON fintrail.audit_checkpoints, fintrail.audit_retention TO fintrail_retention;
GRANT INSERT ON fintrail.audit_retention TO fintrail_retention;
GRANT USAGE ON SCHEMA fintrail_ext TO fintrail_retention;

RESET ROLE;
-- A trusted extension's functions belong to the bootstrap superuser, not to the owner: the
-- admin grants the one the procedure calls.
GRANT EXECUTE ON FUNCTION fintrail_ext.hmac(bytea, bytea, text) TO fintrail_retention;
ALTER FUNCTION fintrail.audit_purge_through(bigint, bytea) OWNER TO fintrail_retention;
-- Operators run retention through the owner (the migrations' role), never the app.
GRANT EXECUTE ON FUNCTION fintrail.audit_purge_through(bigint, bytea) TO fintrail_owner;
