//! The one-line harness a user's `[[test]]` target holds, as a binary, so the
//! end-to-end tests can run the real compiled harness on suites they write
//! (in `$FORGE_SUITES_DIR`, which `forge::harness::main` honours). As a
//! binary, `forge::harness!` leaves out its libtest guard.

forge::harness!("suites");
