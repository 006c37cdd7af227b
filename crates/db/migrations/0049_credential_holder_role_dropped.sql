-- `credential_holder_role` has had no caller since 0048: the audit trigger reads the token (else
-- the console session), its role and the grant in its own query, and nothing else (no Rust code,
-- no other function) called it. Kept, it was a second copy of the rule "which credential proves
-- which holder" (the token's liveness, the console session's 30-minute idle window) that could
-- drift from the one the trigger enforces, and an EXECUTE grant to the app role for nothing.
-- The rule now lives only in `audit_events_before_insert` (0048).
DROP FUNCTION fintrail.credential_holder_role(text);
