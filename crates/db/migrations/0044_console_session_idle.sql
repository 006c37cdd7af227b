-- Console sessions end after 30 minutes without a request, not only 8 hours after login
-- (issue #19). The database stamps the last use: the application may only ask for the stamp
-- to be renewed (UPDATE of last_seen_at, which the trigger sets to now()); it cannot choose
-- the time nor change anything else of a session. Existing sessions start their idle window
-- at this migration.
ALTER TABLE fintrail.console_sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();

CREATE OR REPLACE FUNCTION fintrail.console_sessions_immutable() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF (NEW.id, NEW.session_hash, NEW.token_id, NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM (OLD.id, OLD.session_hash, OLD.token_id, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'console_sessions: only the last use is renewed (log out and in again)' USING ERRCODE = 'FT004';
    END IF;
    NEW.last_seen_at := now();
    RETURN NEW;
END
$fn$;

GRANT UPDATE (last_seen_at) ON fintrail.console_sessions TO fintrail_app;

-- The actor check (0037, 0042) accepts a session's secret only while the session is alive,
-- idle window included: the same rule as the console's own lookup.
CREATE OR REPLACE FUNCTION fintrail.credential_holder(p_credential text) RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT CASE WHEN k.customer_id IS NOT NULL THEN 'customer:' || k.customer_id
                ELSE 'staff:' || k.id || ':' || k.label END
      FROM fintrail.api_tokens k
     WHERE k.token_hash = sha256(convert_to(p_credential, 'UTF8'))
       AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true)
    UNION ALL
    SELECT 'staff:' || k.id || ':' || k.label
      FROM fintrail.console_sessions s JOIN fintrail.api_tokens k ON k.id = s.token_id
     WHERE s.session_hash = sha256(convert_to(p_credential, 'UTF8')) AND s.expires_at > now()
       AND s.last_seen_at > now() - interval '30 minutes'
       AND k.customer_id IS NULL AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true)
    LIMIT 1
$fn$;
