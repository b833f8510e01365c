//! structops-btf (work in progress).
