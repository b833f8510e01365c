//! Pretty-printing values of BTF types.
