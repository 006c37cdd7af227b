-- Median (and p90) time a KYC case spends in each state before leaving it, from the transition
-- history (kyc_case_transitions: from_state, to_state, at). A case enters `started` at its
-- creation (kyc_cases.created_at; there is no history row for it) and every other state at the
-- transition that led there; each transition row closes the stay in its from_state.
CREATE OR REPLACE VIEW kyc_time_in_state AS
WITH t AS (
    SELECT tr.from_state AS state,
           tr."at" AS left_at,
           coalesce(lag(tr."at") OVER (PARTITION BY tr.case_id ORDER BY tr.id), c.created_at) AS entered_at
    FROM kyc_case_transitions tr JOIN kyc_cases c ON c.id = tr.case_id
)
SELECT state,
       count(*) AS exits,
       median(epoch(left_at) - epoch(entered_at)) AS median_secs,
       quantile_cont(epoch(left_at) - epoch(entered_at), 0.9) AS p90_secs
FROM t
GROUP BY state
ORDER BY state;
