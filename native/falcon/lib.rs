// Empty: this crate exists only so `cargo fetch` brings PQClean's Falcon sources.
