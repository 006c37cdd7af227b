-- Periodic jobs (`fintrail jobs`, issue #15): one row per run, for `fintrail jobs list` and for
-- deciding which jobs are due. The audit trail holds the authoritative start/finish events
-- (job.started / job.finished / job.failed); this table is the cheap index over them.
--
-- A run is inserted as `running` and finished exactly once (`running` -> a final outcome); a
-- process killed mid-run leaves its row `running` for ever, which `jobs list` reports as
-- interrupted once no process holds the job's advisory lock. Nothing else changes a row.
CREATE TABLE fintrail.job_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text        NOT NULL CHECK (job ~ '^[a-z][a-z0-9-]{0,62}$'),
    actor       text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    trigger     text        NOT NULL CHECK (trigger IN ('cli', 'http', 'up')),
    dry_run     boolean     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text        NOT NULL DEFAULT 'running'
                            CHECK (outcome IN ('running', 'ok', 'partial', 'failed', 'busy')),
    counts      jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (length(counts::text) <= 4096),
    error       text        CHECK (length(error) <= 2000),
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX job_runs_by_job ON fintrail.job_runs (job, id DESC);

CREATE FUNCTION fintrail.job_runs_before_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.outcome <> 'running' OR NEW.finished_at IS NOT NULL THEN
            RAISE EXCEPTION 'job_runs: a run starts as running' USING ERRCODE = 'FT040';
        END IF;
        NEW.started_at := clock_timestamp();
        RETURN NEW;
    END IF;
    IF OLD.outcome <> 'running' OR NEW.outcome = 'running'
       OR (NEW.id, NEW.job, NEW.actor, NEW.trigger, NEW.dry_run, NEW.started_at)
          IS DISTINCT FROM (OLD.id, OLD.job, OLD.actor, OLD.trigger, OLD.dry_run, OLD.started_at) THEN
        RAISE EXCEPTION 'job_runs %: a run is finished once, and only its outcome changes', OLD.id
            USING ERRCODE = 'FT040';
    END IF;
    NEW.finished_at := clock_timestamp();
    RETURN NEW;
END
$fn$;
CREATE TRIGGER job_runs_before_change BEFORE INSERT OR UPDATE ON fintrail.job_runs
    FOR EACH ROW EXECUTE FUNCTION fintrail.job_runs_before_change();

GRANT SELECT ON fintrail.job_runs TO fintrail_app;
GRANT INSERT (job, actor, trigger, dry_run) ON fintrail.job_runs TO fintrail_app;
GRANT UPDATE (outcome, counts, error, finished_at) ON fintrail.job_runs TO fintrail_app;
