-- Customer and organization wallets with at least one ledger entry in the last 30 days, per
-- currency, next to all such wallets (system accounts are bookkeeping, not users).
CREATE OR REPLACE VIEW active_wallets AS
SELECT w.currency,
       count(DISTINCT e.wallet_id) AS active_wallets_30d,
       count(DISTINCT w.id) AS wallets
FROM wallets w
LEFT JOIN entries e ON e.wallet_id = w.id AND e.created_at >= now() - INTERVAL 30 DAY
WHERE w.kind <> 'system'
GROUP BY w.currency
ORDER BY w.currency;
