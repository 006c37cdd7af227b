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

-- 2. One BEFORE INSERT trigger on the trail instead of two. The actor check (0037) and the
-- assignment of txid, seq and time (0000) were separate PL/pgSQL triggers: each call costs a
-- function entry and a copy of the row, once per event, and the ledger writes an event per
-- posting. Same order as before: the actor is checked first, so a refused event takes no
-- sequence number; then the transaction id is taken before the sequence number (the
-- sequencer's gap rule, see 0000). Error FT031 as before.
CREATE OR REPLACE FUNCTION fintrail.audit_events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    holder text;
BEGIN
    IF session_user::text = 'fintrail_app' THEN
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
