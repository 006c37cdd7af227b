-- What an audit event's INSERT costs the database (issue #16's `bench audit` ratio, issue #18):
-- two changes, the same rules.
--
-- 1. The actor check's token lookup, with a plan that is kept. `credential_holder` was a
-- `LANGUAGE sql` function that PostgreSQL cannot inline (it is called from PL/pgSQL with a
-- UNION ... LIMIT body): such a function is parsed and planned again on every call.
-- Profiled on `fintrail bench audit` (release build, `perf record -a`): 13 % of PostgreSQL's
-- CPU with the trail on went to parsing and planning it, one call per audit event.
-- In PL/pgSQL each statement's plan is cached for the session.
--
-- Same answer as 0044's: the live token whose hash the credential is, as the API names its
-- holder, else a console session's secret while the session (idle window included) and its
-- staff token live. The hash is computed once; the two lookups are index probes
-- (`api_tokens.token_hash`, `console_sessions.session_hash` are unique).
CREATE OR REPLACE FUNCTION fintrail.credential_holder(p_credential text) RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_hash   bytea := sha256(convert_to(p_credential, 'UTF8'));
    v_holder text;
BEGIN
    SELECT CASE WHEN k.customer_id IS NOT NULL THEN 'customer:' || k.customer_id
                ELSE 'staff:' || k.id || ':' || k.label END
      INTO v_holder
      FROM fintrail.api_tokens k
     WHERE k.token_hash = v_hash
       AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true);
    IF FOUND THEN
        RETURN v_holder;
    END IF;
    SELECT 'staff:' || k.id || ':' || k.label
      INTO v_holder
      FROM fintrail.console_sessions s JOIN fintrail.api_tokens k ON k.id = s.token_id
     WHERE s.session_hash = v_hash AND s.expires_at > now()
       AND s.last_seen_at > now() - interval '30 minutes'
       AND k.customer_id IS NULL AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true);
    RETURN v_holder;
END
$fn$;

-- 2. One BEFORE INSERT trigger on the trail instead of two, and the row's shape checked in it.
-- * The actor check (0037) and the assignment of txid, seq and time (0000) were separate
--   PL/pgSQL triggers: each call costs a function entry and a copy of the row, once per event
--   (the ledger writes one per posting). Same order as before: the actor is checked first, so
--   a refused event takes no sequence number; the transaction id is taken before the sequence
--   number (the sequencer's gap rule, see 0000). Error FT031 as before.
-- * The column CHECKs move into the trigger, with the same rules and the same error class
--   (23514 `check_violation`; a `before`/`after` that is not JSON fails its cast, 22P02, as it
--   did): PostgreSQL reads and prepares a table's CHECK expressions again for every INSERT
--   statement, 9 of them here, and the two `~ '^[a-z_.]{1,64}$'` patterns compile a bounded
--   repetition. Measured per API request with the trail on (`perf`, bench audit): 130 us in
--   CHECK preparation and evaluation, 40 us in regular expressions. A trigger's expressions are
--   prepared once per session, and the character rules below need no bounded repetition.
--   `credential IS NULL` stays a CHECK: that the bearer is never stored holds even with the
--   trigger disabled.
-- * Every session's events pass these checks (the owner's and the administrator's too); only
--   the actor check is for `fintrail_app` sessions, as before.
CREATE OR REPLACE FUNCTION fintrail.audit_events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    holder text;
    v_json jsonb;
BEGIN
    IF NOT (length(NEW.actor) BETWEEN 1 AND 200)
       OR length(NEW.on_behalf_of) > 200
       OR NOT (length(NEW.action) BETWEEN 1 AND 64) OR NEW.action ~ '[^a-z_.]'
       OR NOT (length(NEW.subject) BETWEEN 1 AND 200)
       OR NOT (length(NEW.permission) BETWEEN 1 AND 64) OR NEW.permission ~ '[^a-z_.]'
       OR length(NEW.request_id) > 64
       OR length(NEW.before) > 65536 OR length(NEW.after) > 65536 THEN
        RAISE EXCEPTION 'audit_events: an event''s actor and subject are 1-200 characters, on_behalf_of at most 200, action and permission 1-64 of [a-z_.], request_id at most 64, before and after at most 65536'
            USING ERRCODE = 'check_violation';
    END IF;
    -- JSON or nothing: the cast refuses anything else (22P02).
    v_json := NEW.before::jsonb;
    v_json := NEW.after::jsonb;
    IF session_user::text = 'fintrail_app' THEN
        IF starts_with(NEW.actor, 'staff:') OR starts_with(NEW.actor, 'customer:') OR NEW.action = 'token.issued' THEN
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
        ELSIF starts_with(NEW.actor, 'signed_url:') THEN
            IF NEW.actor !~ '^signed_url:[0-9a-f]{1,16}:token:[0-9]{1,19}$'
               OR NOT EXISTS (SELECT 1 FROM fintrail.api_tokens k
                              WHERE k.id = substring(NEW.actor FROM ':token:([0-9]+)$')::bigint
                                AND (k.revoked_at IS NULL OR k.revoked_at >= now())) THEN
                RAISE EXCEPTION 'audit_events: actor %: the issuing token is unknown or revoked', NEW.actor
                    USING ERRCODE = 'FT031';
            END IF;
        ELSIF starts_with(NEW.actor, 'system:') AND length(NEW.actor) BETWEEN 8 AND 107
              AND substr(NEW.actor, 8) !~ '[^a-z0-9_.:-]' THEN
            NULL;
        ELSIF (starts_with(NEW.actor, 'anonymous:') OR starts_with(NEW.actor, 'oidc:')) AND NOT NEW.allowed THEN
            NULL;
        ELSE
            RAISE EXCEPTION 'audit_events: actor % is not one the database can check', NEW.actor
                USING ERRCODE = 'FT031';
        END IF;
    END IF;
    -- The bearer is never stored (a CHECK holds the column NULL).
    NEW.credential := NULL;
    NEW.txid := pg_current_xact_id();
    NEW.seq := nextval('fintrail.audit_events_seq');
    NEW.at := clock_timestamp();
    RETURN NEW;
END
$fn$;
DROP TRIGGER audit_events_actor_check ON fintrail.audit_events;
DROP FUNCTION fintrail.audit_events_actor_check();
ALTER TABLE fintrail.audit_events
    DROP CONSTRAINT audit_events_actor_check,
    DROP CONSTRAINT audit_events_on_behalf_of_check,
    DROP CONSTRAINT audit_events_action_check,
    DROP CONSTRAINT audit_events_subject_check,
    DROP CONSTRAINT audit_events_permission_check,
    DROP CONSTRAINT audit_events_request_id_check,
    DROP CONSTRAINT audit_events_before_check,
    DROP CONSTRAINT audit_events_after_check;
