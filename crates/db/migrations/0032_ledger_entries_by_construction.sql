-- Entries reference their transfer and their wallet by construction instead of by foreign key.
--
-- Why this holds without the two foreign keys:
--  * an entry is written only by the `transfers_post` trigger (FT012 refuses any other insert,
--    even the owner's), from the rows of the statement's own transfers (`nt.id`) and their two
--    wallets, joined against `wallets`;
--  * those transfers' foreign keys to `wallets` are checked before it runs (row-level RI
--    triggers fire before the statement-level trigger), so the wallets exist;
--  * transfers and wallets can never be deleted or truncated (FT004, even for the owner), and
--    entries are immutable: a reference, once valid, stays valid;
--  * `fintrail ledger check` reports an entry without its transfer or wallet (`OrphanEntry`).
-- Why drop them: each costs an SPI query and a row lock per entry, four per transfer, inside
-- the ledger's hottest statement (measured: ~13 % of a five-transfer batch INSERT, 0.85 ms ->
-- 0.74 ms). The foreign keys of `transfers` (to wallets, holds, reversed transfers) and of
-- `idempotency_keys` stay: the application writes those rows.
ALTER TABLE fintrail.entries
    DROP CONSTRAINT entries_transfer_id_fkey,
    DROP CONSTRAINT entries_wallet_id_fkey;
