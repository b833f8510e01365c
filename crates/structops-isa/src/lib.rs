//! structops-isa (work in progress).
