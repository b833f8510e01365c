//! `#[derive(Btf)]` (work in progress).
