//! Compile-fail tests: one file per mistake in `tests/ui/`, with the
//! expected compiler output beside it (`TRYBUILD=overwrite` regenerates it).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
