//! `fintrail serve`: the HTTP API. Not built yet (issue 3).
