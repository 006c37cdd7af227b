-- KYC funnel: how many cases ever reached each state, and how many are in it now. Every case
-- starts in `started` (no history row for that), every later state is a transition's to_state.
CREATE OR REPLACE VIEW kyc_funnel AS
WITH reached AS (
    SELECT 'started' AS state, count(*) AS cases_reached FROM kyc_cases
    UNION ALL
    SELECT to_state AS state, count(DISTINCT case_id) AS cases_reached
    FROM kyc_case_transitions GROUP BY to_state
), current AS (
    SELECT state, count(*) AS cases_now FROM kyc_cases GROUP BY state
)
SELECT coalesce(r.state, c.state) AS state,
       coalesce(r.cases_reached, 0) AS cases_reached,
       coalesce(c.cases_now, 0) AS cases_now
FROM reached r FULL OUTER JOIN current c ON r.state = c.state
ORDER BY cases_reached DESC, state;
