-- Daily transfer volume and count per currency (amounts in integer minor units).
CREATE OR REPLACE VIEW daily_transfer_volume AS
SELECT CAST(created_at AS DATE) AS day,
       currency,
       count(*) AS transfers,
       sum(amount_minor) AS volume_minor
FROM transfers
GROUP BY ALL
ORDER BY day, currency;
