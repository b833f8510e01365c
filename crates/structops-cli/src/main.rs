//! The `structops` command-line tool.
fn main() {}
