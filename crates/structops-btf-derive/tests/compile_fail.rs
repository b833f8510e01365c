//! Bad input to `#[derive(Btf)]` is a compile error with a message, never a panic in the
//! macro. Each `ui/*.rs` case has its expected diagnostics in `ui/*.stderr`; regenerate
//! them with `TRYBUILD=overwrite cargo test -p structops-btf-derive --test compile_fail`.

#[test]
fn bad_input_is_a_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
