-- Issue #16, item 4, its second half: an event names an actor the database checks (0037,
-- 0045), and now also a permission that actor holds. With the app credential and a valid
-- customer token, an INSERT could record `allowed` under a staff permission
-- (`kyc.case.review`): a forged authorization in a trail that proves only integrity.
--
-- `role_permissions` is the roles' permissions as the database sees them. The source of truth
-- stays in Rust (`fintrail_domain::Role::permissions`): `fintrail db migrate` writes this table
-- from it after every run (`fintrail_db::migrate::sync_role_permissions`), so the two cannot
-- drift; a test compares them. Only the owner and the administrator write it; the app role
-- reads it because the insert trigger runs with the inserting session's rights.
CREATE TABLE fintrail.role_permissions (
    role       text NOT NULL CHECK (role ~ '^[a-z_]{1,40}$'),
    permission text NOT NULL CHECK (permission ~ '^[a-z_.]{1,64}$'),
    PRIMARY KEY (role, permission)
);
GRANT SELECT ON fintrail.role_permissions TO fintrail_app;

-- The holder of a presented credential and its token's role, in one lookup (same rules as
-- 0045's `credential_holder`, which it replaces).
CREATE FUNCTION fintrail.credential_holder_role(p_credential text, OUT holder text, OUT role text)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_hash bytea := sha256(convert_to(p_credential, 'UTF8'));
BEGIN
    SELECT CASE WHEN k.customer_id IS NOT NULL THEN 'customer:' || k.customer_id
                ELSE 'staff:' || k.id || ':' || k.label END, k.role
      INTO holder, role
      FROM fintrail.api_tokens k
     WHERE k.token_hash = v_hash
       AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true);
    IF FOUND THEN
        RETURN;
    END IF;
    SELECT 'staff:' || k.id || ':' || k.label, k.role
      INTO holder, role
      FROM fintrail.console_sessions s JOIN fintrail.api_tokens k ON k.id = s.token_id
     WHERE s.session_hash = v_hash AND s.expires_at > now()
       AND s.last_seen_at > now() - interval '30 minutes'
       AND k.customer_id IS NULL AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true);
END
$fn$;
GRANT EXECUTE ON FUNCTION fintrail.credential_holder_role(text) TO fintrail_app;

-- 0045's trigger, with the holder's role looked up and the permission checked.
CREATE OR REPLACE FUNCTION fintrail.audit_events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    holder text;
    v_role text;
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
            SELECT h.holder, h.role INTO holder, v_role FROM fintrail.credential_holder_role(NEW.credential) h;
            IF holder IS NULL THEN
                RAISE EXCEPTION 'audit_events: actor %: the presented token is unknown, expired or revoked', NEW.actor
                    USING ERRCODE = 'FT031';
            END IF;
            IF NEW.actor IS DISTINCT FROM holder THEN
                RAISE EXCEPTION 'audit_events: actor % is not the holder of the presented token', NEW.actor
                    USING ERRCODE = 'FT031';
            END IF;
            -- An allowed event's permission is one the holder's role grants (a denial may name
            -- any permission: the one that was missing).
            IF NEW.allowed AND NEW.permission IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM fintrail.role_permissions rp
                    WHERE rp.role = v_role AND rp.permission = NEW.permission) THEN
                RAISE EXCEPTION 'audit_events: actor % holds role %, which does not grant %', NEW.actor, v_role, NEW.permission
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
DROP FUNCTION fintrail.credential_holder(text);
