-- Every audit event names an actor the database can check (issue #16, items 2 and 4).
--
-- The trail proved integrity, not authenticity: the app credential could write an event naming
-- any staff member or customer. Now an event written by a `fintrail_app` session that names a
-- person (`staff:<token id>:<label>`, `customer:<id>`) must present, in its `credential`
-- column, the bearer token the request was made with. The insert trigger hashes it, finds the
-- live token (not expired; not revoked before this transaction) and requires the actor to be
-- exactly that token's actor. Then it clears the column: the bearer is never stored (a CHECK
-- holds it NULL), so it is neither in the table, nor in the WAL, nor replicated.
--
-- Other actors a `fintrail_app` session may write, none of which names a person:
-- * `signed_url:<key id>:token:<id>`: a signed-URL redemption, while the issuing token lives;
-- * `system:<name>`: the platform itself (periodic jobs `system:job:<name>`, the ledger);
-- * `anonymous:...` and `oidc:...`, only on refusals (`allowed = false`): nobody authenticated.
-- A token is issued (`token.issued`) by a credentialed actor only: minting one with the app
-- credential alone is refused; operators issue tokens from an administrative session.
--
-- Sessions of other roles (the owner's migrations, the administrator's `fintrail token create`,
-- demo seeding) are not checked: they are outside what the trail can prevent (ARCHITECTURE.md,
-- "trust boundary"). `session_user`, not `current_user`: a session cannot change it.
--
-- Error FT031 (`actor_unverified`).

ALTER TABLE fintrail.audit_events ADD COLUMN credential text CHECK (credential IS NULL);

-- The actor a credential proves, or NULL: the live token whose hash it is, as the API names
-- its holder (`Principal::actor`). One place to answer it, so that later kinds of credential
-- (the console's sessions, 0042) extend this function and not the trigger.
CREATE FUNCTION fintrail.credential_holder(p_credential text) RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT CASE WHEN k.customer_id IS NOT NULL THEN 'customer:' || k.customer_id
                ELSE 'staff:' || k.id || ':' || k.label END
      FROM fintrail.api_tokens k
     WHERE k.token_hash = sha256(convert_to(p_credential, 'UTF8'))
       AND k.expires_at > now() AND coalesce(k.revoked_at >= now(), true)
$fn$;
GRANT EXECUTE ON FUNCTION fintrail.credential_holder(text) TO fintrail_app;

CREATE FUNCTION fintrail.audit_events_actor_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    holder text;
BEGIN
    IF session_user::text <> 'fintrail_app' THEN
        NEW.credential := NULL;
        RETURN NEW;
    END IF;
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
    NEW.credential := NULL;
    RETURN NEW;
END
$fn$;
-- Fires before `audit_events_before_insert` (triggers fire in name order), so a refused event
-- takes no sequence number.
CREATE TRIGGER audit_events_actor_check BEFORE INSERT ON fintrail.audit_events
    FOR EACH ROW EXECUTE FUNCTION fintrail.audit_events_actor_check();
