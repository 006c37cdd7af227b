-- No change without its audit event (issue #16, item 1): the database refuses to commit a
-- transfer, a hold change, a KYC/KYB case or transition, a token issue or revocation, a media
-- registration, a customer or a customer/organization wallet unless the same transaction wrote
-- an audit event naming it as subject with a matching action.
--
-- "The same transaction" is `audit_events.txid = pg_current_xact_id()`: the insert trigger sets
-- `txid` itself (0014), so a writer cannot borrow another transaction's event. The index below
-- makes each check one probe; it is on (txid, subject), not on a hot row, so concurrent writers
-- do not serialise on it.
--
-- Two shapes, one rule:
-- * Transfers (the hot path, group-committed in batches) are checked once per INSERT statement,
--   over its transition table: the engine appends a batch's events before its transfers (the
--   ids are pre-assigned), so one anti-join proves the whole batch. Cheaper than one deferred
--   trigger call per row, which the ledger's throughput budget cannot afford.
-- * Everything else is checked by a deferred constraint trigger per row, at commit, so the
--   writer may append the event after the row whose id it names.
--
-- Error FT030 (`audit_event_missing`): the change is refused and nothing of the transaction is
-- kept. Documented limit: the owner (DDL) can disable these triggers; the checkpoint files
-- outside the database are what detects what it then does (ARCHITECTURE.md, "trust boundary").

CREATE INDEX audit_events_txid_subject ON fintrail.audit_events (txid, subject);

-- The subject and the accepted actions of one changed row, per table.
CREATE FUNCTION fintrail.audit_coupling_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    v_subject text;
    v_actions text[];
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'holds' THEN
        v_subject := 'hold:' || NEW.id;
        v_actions := CASE WHEN TG_OP = 'INSERT' THEN ARRAY['ledger.hold.created']
                        ELSE ARRAY['ledger.hold.' || NEW.status] END;
    WHEN 'kyc_cases' THEN
        v_subject := 'kyc_case:' || NEW.id;
        v_actions := ARRAY['kyc.case.created'];
    WHEN 'kyc_case_transitions' THEN
        v_subject := 'kyc_case:' || NEW.case_id;
        v_actions := ARRAY['kyc.case.transitioned', 'kyc.case.created'];
    WHEN 'organizations' THEN
        v_subject := 'organization:' || NEW.id;
        v_actions := ARRAY['kyb.organization.created'];
    WHEN 'organization_transitions' THEN
        v_subject := 'organization:' || NEW.organization_id;
        v_actions := ARRAY['kyb.organization.transitioned', 'kyb.organization.created'];
    WHEN 'api_tokens' THEN
        v_subject := 'token:' || NEW.id;
        v_actions := CASE WHEN TG_OP = 'INSERT' THEN ARRAY['token.issued'] ELSE ARRAY['token.revoked'] END;
    WHEN 'media_objects' THEN
        v_subject := 'media:' || NEW.id;
        v_actions := ARRAY['media.uploaded'];
    WHEN 'customers' THEN
        v_subject := 'customer:' || NEW.id;
        v_actions := ARRAY['customer.created'];
    WHEN 'wallets' THEN
        v_subject := 'wallet:' || NEW.id;
        v_actions := ARRAY['ledger.wallet.opened'];
    END CASE;
    -- Inline, not a helper function: trigger functions need no EXECUTE grant, helpers would.
    IF NOT EXISTS (SELECT 1 FROM fintrail.audit_events e
                   WHERE e.txid = pg_current_xact_id() AND e.subject = v_subject AND e.action = ANY (v_actions)) THEN
        RAISE EXCEPTION '%: % of % without its audit event (%) in the same transaction',
            TG_TABLE_NAME, lower(TG_OP), v_subject, array_to_string(v_actions, ' or ')
            USING ERRCODE = 'FT030';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE CONSTRAINT TRIGGER holds_audit_coupled AFTER INSERT ON fintrail.holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER holds_status_audit_coupled AFTER UPDATE OF status ON fintrail.holds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER kyc_cases_audit_coupled AFTER INSERT ON fintrail.kyc_cases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER kyc_case_transitions_audit_coupled AFTER INSERT ON fintrail.kyc_case_transitions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER organizations_audit_coupled AFTER INSERT ON fintrail.organizations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER organization_transitions_audit_coupled AFTER INSERT ON fintrail.organization_transitions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER api_tokens_audit_coupled AFTER INSERT ON fintrail.api_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER api_tokens_revoke_audit_coupled AFTER UPDATE OF revoked_at ON fintrail.api_tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER media_objects_audit_coupled AFTER INSERT ON fintrail.media_objects
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
CREATE CONSTRAINT TRIGGER customers_audit_coupled AFTER INSERT ON fintrail.customers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fintrail.audit_coupling_check();
-- System wallets are created by migrations, outside any request: nobody opens them.
CREATE CONSTRAINT TRIGGER wallets_audit_coupled AFTER INSERT ON fintrail.wallets
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.kind <> 'system')
    EXECUTE FUNCTION fintrail.audit_coupling_check();

-- Transfers: per statement, the events first. A hold's posting is recorded on the hold.
CREATE FUNCTION fintrail.transfers_audit_coupled() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    missing text;
BEGIN
    SELECT n.subject INTO missing
    FROM (SELECT CASE WHEN t.kind = 'hold_post' THEN 'hold:' || t.hold_id ELSE 'transfer:' || t.id END AS subject,
                 CASE t.kind WHEN 'hold_post' THEN 'ledger.hold.posted' ELSE 'ledger.' || t.kind || '.posted' END AS action
          FROM new_transfers t) n
    WHERE NOT EXISTS (SELECT 1 FROM fintrail.audit_events e
                      WHERE e.txid = pg_current_xact_id() AND e.subject = n.subject AND e.action = n.action)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers: insert of % without its audit event, written before it in the same transaction', missing
            USING ERRCODE = 'FT030';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER transfers_audit_coupled AFTER INSERT ON fintrail.transfers
    REFERENCING NEW TABLE AS new_transfers FOR EACH STATEMENT EXECUTE FUNCTION fintrail.transfers_audit_coupled();
