// Empty: this crate exists only to run the msquic build script.
