-- run_as: admin
-- Bootstrap: the least-privilege roles and the schema. Runs as the cluster admin
-- (superuser on the private cluster; the Cloud SQL admin user in production).
--
-- fintrail_owner      owns every object; NOLOGIN: reached only by migrations via SET ROLE.
-- fintrail_app        the API: only the DML each later migration grants it, table by table.
-- fintrail_replicator logical replication for `fintrail cdc`: SELECT only on published tables.
-- No role bypasses row security; none of the LOGIN roles owns what it writes.
-- Roles are cluster-wide, so creation is idempotent (many databases share one cluster in tests).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_owner') THEN
        CREATE ROLE fintrail_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_app') THEN
        CREATE ROLE fintrail_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fintrail_replicator') THEN
        CREATE ROLE fintrail_replicator LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;

-- Re-assert the attributes even if the roles pre-existed (e.g. created by hand in production).
ALTER ROLE fintrail_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE fintrail_app NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_replicator REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
ALTER ROLE fintrail_app SET search_path = fintrail;
ALTER ROLE fintrail_replicator SET search_path = fintrail;
ALTER ROLE fintrail_owner SET search_path = fintrail;

-- The admin must be able to SET ROLE fintrail_owner (needed on Cloud SQL, where it is no superuser).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT fintrail_owner TO %I', current_user);
    END IF;
END
$$;

-- Nobody but the named roles may connect; nobody creates objects in public.
DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO fintrail_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO fintrail_app, fintrail_replicator', current_database());
    -- The owner creates publications (CDC) in this database.
    EXECUTE format('GRANT CREATE ON DATABASE %I TO fintrail_owner', current_database());
END
$$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS fintrail AUTHORIZATION fintrail_owner;
REVOKE ALL ON SCHEMA fintrail FROM PUBLIC;
GRANT USAGE ON SCHEMA fintrail TO fintrail_app, fintrail_replicator;

-- Objects the owner creates later grant nothing to PUBLIC (functions default to EXECUTE for PUBLIC).
ALTER DEFAULT PRIVILEGES FOR ROLE fintrail_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE fintrail_owner IN SCHEMA fintrail REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE fintrail_owner IN SCHEMA fintrail REVOKE ALL ON SEQUENCES FROM PUBLIC;
