//! structops-obj (work in progress).
