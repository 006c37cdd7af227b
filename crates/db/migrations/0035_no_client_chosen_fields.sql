-- What the app credential may no longer choose (issue #16, items 2, 5 and 6):
--
-- * Identities and timestamps. INSERT becomes column-level, without `id` and without the
--   defaulted timestamps: `OVERRIDING SYSTEM VALUE` with an id, or a back-dated `created_at`,
--   is refused (42501). A history row can therefore no longer take an id above every later one
--   (which froze a KYC case or organization for ever: the transition trigger orders history by
--   id), and no chosen id collides with a later insert.
-- * Transfers keep their pre-assigned ids (the ledger engine takes a batch of ids from the
--   sequence before it writes, so that audit events and idempotency rows can name them), but an
--   id the sequence has not issued yet is refused: it would collide with a later transfer.
-- * Case and organization `version` / `updated_at` are the transition trigger's to set: the
--   app loses UPDATE on them (they moved without a state change before).
-- * A token lives at most 30 days from its real creation time (`TOKEN_MAX_TTL_SECS` in the API).

REVOKE INSERT ON fintrail.customers, fintrail.api_tokens, fintrail.kyc_cases, fintrail.kyc_case_transitions,
    fintrail.organizations, fintrail.organization_transitions, fintrail.media_objects FROM fintrail_app;
GRANT INSERT (display_name, email) ON fintrail.customers TO fintrail_app;
GRANT INSERT (token_hash, role, customer_id, label, expires_at) ON fintrail.api_tokens TO fintrail_app;
GRANT INSERT (customer_id, state) ON fintrail.kyc_cases TO fintrail_app;
GRANT INSERT (case_id, from_state, to_state, actor, reason, request_id) ON fintrail.kyc_case_transitions TO fintrail_app;
GRANT INSERT (legal_name, registration_number, country, state) ON fintrail.organizations TO fintrail_app;
GRANT INSERT (organization_id, from_state, to_state, actor, reason, request_id)
    ON fintrail.organization_transitions TO fintrail_app;
GRANT INSERT (customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key)
    ON fintrail.media_objects TO fintrail_app;

REVOKE UPDATE (version, updated_at) ON fintrail.kyc_cases, fintrail.organizations FROM fintrail_app;

ALTER TABLE fintrail.api_tokens
    ADD CONSTRAINT api_tokens_lifetime_max CHECK (expires_at <= created_at + interval '30 days') NOT VALID;

CREATE FUNCTION fintrail.transfers_id_issued() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.id < 1 OR NEW.id > coalesce(pg_sequence_last_value('fintrail.transfers_id_seq'), 0) THEN
        RAISE EXCEPTION 'transfers: id % was not issued by transfers_id_seq', NEW.id USING ERRCODE = 'FT021';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER transfers_id_issued BEFORE INSERT ON fintrail.transfers
    FOR EACH ROW EXECUTE FUNCTION fintrail.transfers_id_issued();

-- A hold is posted only together with its `hold_post` transfer of the posted amount (checked at
-- commit: the ledger writes the transfer after the status). `fintrail ledger check` proves the
-- same after the fact.
CREATE FUNCTION fintrail.holds_posted_with_transfer() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fintrail.transfers t
                   WHERE t.hold_id = NEW.id AND t.kind = 'hold_post' AND t.amount_minor = NEW.posted_minor) THEN
        RAISE EXCEPTION 'holds %: posted without its hold_post transfer of %', NEW.id, NEW.posted_minor
            USING ERRCODE = 'FT022';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER holds_posted_with_transfer AFTER UPDATE OF status ON fintrail.holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status = 'posted')
    EXECUTE FUNCTION fintrail.holds_posted_with_transfer();
