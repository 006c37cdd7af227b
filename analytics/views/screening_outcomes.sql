-- KYB screening outcomes per day (organization_transitions: to_state, at): automatic results
-- (clear, potential_match) and manual review decisions (cleared, blocked).
CREATE OR REPLACE VIEW screening_outcomes AS
SELECT CAST(t."at" AS DATE) AS day,  -- "at" quoted: AT is a keyword (AT TIME ZONE)
       to_state AS outcome,
       count(*) AS organizations
FROM organization_transitions t
WHERE to_state IN ('clear', 'potential_match', 'cleared', 'blocked')
GROUP BY ALL
ORDER BY day, outcome;
