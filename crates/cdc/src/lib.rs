//! `fintrail cdc`: logical replication into the analytics store. Not built yet (issue 5).
