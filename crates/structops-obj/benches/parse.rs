//! Parse + relocate benchmark (filled in below).
fn main() {}
