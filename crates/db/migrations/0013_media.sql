-- User media (ID documents, selfies): metadata and content hash; the bytes live in the object
-- store (local directory or GCS). Rows are immutable.
CREATE TABLE fintrail.media_objects (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES fintrail.customers (id),
    kyc_case_id  bigint      NOT NULL REFERENCES fintrail.kyc_cases (id),
    kind         text        NOT NULL CHECK (kind IN ('id_document', 'selfie')),
    content_type text        NOT NULL CHECK (length(content_type) BETWEEN 1 AND 100),
    size_bytes   bigint      NOT NULL CHECK (size_bytes BETWEEN 1 AND 10485760),
    sha256       bytea       NOT NULL CHECK (length(sha256) = 32),
    storage_key  text        NOT NULL UNIQUE CHECK (storage_key ~ '^[a-z0-9/_-]{1,200}$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON fintrail.media_objects (kyc_case_id);

CREATE FUNCTION fintrail.media_objects_refuse() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'media_objects: % is not allowed (immutable)', TG_OP USING ERRCODE = 'FT004';
END
$fn$;
CREATE TRIGGER media_objects_immutable BEFORE UPDATE OR DELETE ON fintrail.media_objects
    FOR EACH ROW EXECUTE FUNCTION fintrail.media_objects_refuse();

GRANT SELECT, INSERT ON fintrail.media_objects TO fintrail_app;
