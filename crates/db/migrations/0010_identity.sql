-- Identity: customers and opaque bearer tokens (stored only as SHA-256 hashes).
-- Roles and permissions are declared in Rust (fintrail-domain access.rs); the database stores
-- the role name with each token and never decides access itself.

CREATE TABLE fintrail.customers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    display_name text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    email        text        NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fintrail.api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        text        NOT NULL CHECK (role ~ '^[a-z_]{1,40}$'),
    customer_id bigint      REFERENCES fintrail.customers (id),
    label       text        NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    -- A customer token always names its customer; a staff token never does.
    CHECK ((role = 'customer') = (customer_id IS NOT NULL)),
    CHECK (expires_at > created_at)
);

-- Tokens are revoked, never un-revoked, re-scoped or deleted.
CREATE FUNCTION fintrail.api_tokens_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'api_tokens: DELETE is not allowed (revoke instead)' USING ERRCODE = 'FT004';
    END IF;
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'api_tokens %: already revoked', OLD.id USING ERRCODE = 'FT002';
    END IF;
    IF (NEW.id, NEW.token_hash, NEW.role, NEW.customer_id, NEW.label, NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.token_hash, OLD.role, OLD.customer_id, OLD.label, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'api_tokens %: only revoked_at may change', OLD.id USING ERRCODE = 'FT002';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER api_tokens_guard BEFORE UPDATE OR DELETE ON fintrail.api_tokens
    FOR EACH ROW EXECUTE FUNCTION fintrail.api_tokens_guard();

GRANT SELECT, INSERT ON fintrail.customers TO fintrail_app;
GRANT SELECT, INSERT ON fintrail.api_tokens TO fintrail_app;
GRANT UPDATE (revoked_at) ON fintrail.api_tokens TO fintrail_app;
