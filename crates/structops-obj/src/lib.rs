//! structops-obj (work in progress).

pub mod core_relo;
