-- With the app credential alone, no money moves (issue #16, items 1 and 4; gaps left by 0037 and 0048).
--
-- Since 0051 a transfer commits only with an *allowed* event naming it, and the app role writes
-- an allowed event for a person (`staff:*`, `customer:*`) only with that person's live bearer
-- token. Two actor families still needed no token, so the app credential alone could record a
-- transfer, a deposit, a withdrawal, a reversal or a hold posting under them:
-- * `system:*`, the platform's own actors (the periodic jobs), with any action. No job posts
--   money: hold expiry releases holds (`ledger.hold.expired`), it does not post them.
-- * `signed_url:<key>:token:<id>`, which needs only the *id* of a live token (the app role can
--   read those), with any action. Its one use is `media.signed_url.redeemed`.
--
-- Through the app role, `system:*` events no longer record `ledger.*.posted` actions, and
-- `signed_url:*` events record only `media.signed_url.redeemed` (FT031, nothing written). An
-- operator session (the admin role: fixtures, demo data) is not the app role and is unchanged.
-- The rest of the function is 0048's.

CREATE OR REPLACE FUNCTION fintrail.audit_events_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    holder    text;
    v_role    text;
    v_granted boolean;
    v_hash    bytea;
    v_json    jsonb;
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
            v_hash := sha256(convert_to(NEW.credential, 'UTF8'));
            -- The live API token whose hash the credential is (as the API names its holder) ...
            SELECT CASE WHEN k.customer_id IS NOT NULL THEN 'customer:' || k.customer_id
                        ELSE 'staff:' || k.id || ':' || k.label END,
                   k.role,
                   EXISTS (SELECT 1 FROM fintrail.role_permissions rp
                            WHERE rp.role = k.role AND rp.permission = NEW.permission)
              INTO holder, v_role, v_granted
              FROM fintrail.api_tokens k
             WHERE k.token_hash = v_hash
               AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true);
            -- ... else a console session's secret while the session (idle window included)
            -- and its staff token live (0044's rule, as in `credential_holder_role`).
            IF NOT FOUND THEN
                SELECT 'staff:' || k.id || ':' || k.label,
                       k.role,
                       EXISTS (SELECT 1 FROM fintrail.role_permissions rp
                                WHERE rp.role = k.role AND rp.permission = NEW.permission)
                  INTO holder, v_role, v_granted
                  FROM fintrail.console_sessions s JOIN fintrail.api_tokens k ON k.id = s.token_id
                 WHERE s.session_hash = v_hash AND s.expires_at > now()
                   AND s.last_seen_at > now() - interval '30 minutes'
                   AND k.customer_id IS NULL AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true);
            END IF;
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
            IF NEW.allowed AND NEW.permission IS NOT NULL AND NOT v_granted THEN
                RAISE EXCEPTION 'audit_events: actor % holds role %, which does not grant %', NEW.actor, v_role, NEW.permission
                    USING ERRCODE = 'FT031';
            END IF;
        ELSIF starts_with(NEW.actor, 'signed_url:') THEN
            -- A signed URL's actor records its own redemption, nothing else (0052).
            IF NEW.action <> 'media.signed_url.redeemed' THEN
                RAISE EXCEPTION 'audit_events: actor % records only the redemption of its signed URL, not %', NEW.actor, NEW.action
                    USING ERRCODE = 'FT031';
            END IF;
            IF NEW.actor !~ '^signed_url:[0-9a-f]{1,16}:token:[0-9]{1,19}$'
               OR NOT EXISTS (SELECT 1 FROM fintrail.api_tokens k
                              WHERE k.id = substring(NEW.actor FROM ':token:([0-9]+)$')::bigint
                                AND (k.revoked_at IS NULL OR k.revoked_at >= now())) THEN
                RAISE EXCEPTION 'audit_events: actor %: the issuing token is unknown or revoked', NEW.actor
                    USING ERRCODE = 'FT031';
            END IF;
        ELSIF starts_with(NEW.actor, 'system:') AND length(NEW.actor) BETWEEN 8 AND 107
              AND substr(NEW.actor, 8) !~ '[^a-z0-9_.:-]' THEN
            -- The platform's own actors (jobs) present no token: they move no money (0052).
            IF NEW.action LIKE 'ledger.%.posted' THEN
                RAISE EXCEPTION 'audit_events: actor % presents no token, and money moves only for one (%)', NEW.actor, NEW.action
                    USING ERRCODE = 'FT031';
            END IF;
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
