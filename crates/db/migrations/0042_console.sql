-- The compliance console (issue #19): browser sessions, and the indexes its list pages page
-- through (bounded pages, keyset pagination: every page is an index range, never an OFFSET).

-- A console session: a staff bearer token exchanged for a cookie at the login form. Only the
-- SHA-256 of the cookie's 256-bit secret is stored (as for tokens). A session is valid while
-- it has not expired AND its token is neither revoked nor expired: the console joins
-- api_tokens on every request, so revoking the token ends every session made from it at once.
-- The application never chooses the times: the trigger stamps them (as migration 0035 does
-- for every other table). Logout deletes the row; the trail keeps the login and logout events.
CREATE TABLE fintrail.console_sessions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash bytea       NOT NULL UNIQUE CHECK (length(session_hash) = 32),
    token_id     bigint      NOT NULL REFERENCES fintrail.api_tokens (id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '8 hours')
);
CREATE INDEX console_sessions_expiry ON fintrail.console_sessions (expires_at);

CREATE FUNCTION fintrail.console_sessions_before_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.created_at := now();
    NEW.expires_at := now() + interval '8 hours';
    RETURN NEW;
END
$fn$;
CREATE TRIGGER console_sessions_before_insert BEFORE INSERT ON fintrail.console_sessions
    FOR EACH ROW EXECUTE FUNCTION fintrail.console_sessions_before_insert();

CREATE FUNCTION fintrail.console_sessions_immutable() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'console_sessions: UPDATE is not allowed (log out and in again)' USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER console_sessions_immutable BEFORE UPDATE ON fintrail.console_sessions
    FOR EACH ROW EXECUTE FUNCTION fintrail.console_sessions_immutable();

GRANT SELECT, DELETE ON fintrail.console_sessions TO fintrail_app;
GRANT INSERT (session_hash, token_id) ON fintrail.console_sessions TO fintrail_app;

-- Review queues: open cases / organizations, oldest waiting first (or last), keyset on
-- (updated_at, id). Partial: the queue predicate is the index's, whatever the table's size.
CREATE INDEX kyc_cases_review_queue ON fintrail.kyc_cases (updated_at, id)
    WHERE state IN ('documents_submitted', 'in_review');
CREATE INDEX organizations_review_queue ON fintrail.organizations (updated_at, id)
    WHERE state IN ('potential_match', 'manual_review');

-- The audit viewer: newest first, keyset on seq, filtered by actor, subject or action (each an
-- index range in seq order; an action filter walks the seq index: each extra index on the
-- trail is paid by every audited write); a time window pages on (at, seq) instead (exact, and a window far
-- in the past is an index range rather than a walk back from the newest event). A page costs
-- its rows, not the trail's size.
CREATE INDEX audit_events_by_actor ON fintrail.audit_events (actor, seq);
CREATE INDEX audit_events_by_subject ON fintrail.audit_events (subject, seq);
CREATE INDEX audit_events_by_time ON fintrail.audit_events (at, seq);

-- A console session proves its staff member's actor like the bearer it was made from (the
-- actor check of 0037 asks `credential_holder`): the session's secret, while the session and
-- its token live.
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
       AND k.customer_id IS NULL AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true)
    LIMIT 1
$fn$;
