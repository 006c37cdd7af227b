-- A change is coupled only to an *allowed* event (issue #16, item 1, a gap left by 0036).
--
-- The coupling (0036, in the baseline) asked for an event of the same transaction that names the
-- change as subject with a matching action, whatever its `allowed`. The app role may write
-- denial records for actors the database cannot check (`anonymous:*`, `oidc:*`: the trigger on
-- audit_events accepts them only with `allowed = false`). So with the app credential alone, a
-- transfer, a KYC approval or a token revocation committed with a *denied* event as its record:
-- money moved while the trail said the request was refused.
--
-- Both checks now want `e.allowed`. The application records every change it makes as allowed,
-- and a denial never comes with a change, so no legitimate writer is affected. Same errors
-- (FT030), same messages, same index probe (audit_events_txid_subject), one more column
-- tested on the rows it finds.

CREATE OR REPLACE FUNCTION fintrail.audit_coupling_check() RETURNS trigger LANGUAGE plpgsql AS $fn$
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
                   WHERE e.txid = pg_current_xact_id() AND e.subject = v_subject AND e.action = ANY (v_actions)
                     AND e.allowed) THEN
        RAISE EXCEPTION '%: % of % without its audit event (%) in the same transaction',
            TG_TABLE_NAME, lower(TG_OP), v_subject, array_to_string(v_actions, ' or ')
            USING ERRCODE = 'FT030';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION fintrail.transfers_audit_coupled() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    missing text;
BEGIN
    SELECT n.subject INTO missing
    FROM (SELECT CASE WHEN t.kind = 'hold_post' THEN 'hold:' || t.hold_id ELSE 'transfer:' || t.id END AS subject,
                 CASE t.kind WHEN 'hold_post' THEN 'ledger.hold.posted' ELSE 'ledger.' || t.kind || '.posted' END AS action
          FROM new_transfers t) n
    WHERE NOT EXISTS (SELECT 1 FROM fintrail.audit_events e
                      WHERE e.txid = pg_current_xact_id() AND e.subject = n.subject AND e.action = n.action
                        AND e.allowed)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfers: insert of % without its audit event, written before it in the same transaction', missing
            USING ERRCODE = 'FT030';
    END IF;
    RETURN NULL;
END
$fn$;
