//! Benchmarks of structops, each figure next to its reference measured in the same run.
//!
//! Every benchmark has two faces: a criterion suite (`cargo bench -p structops-bench`),
//! for careful measurement, and a quick mode in this library that `structops bench`
//! runs on a user's machine so they can judge the runtime there. A quick mode returns
//! a [`Report`]: rows of figures, each with the reference it is judged against and the
//! target the project set for it.
//!
//! The suites (issue 5 of the project):
//!
//! - **call**: a host calling a struct_ops member through its native entry point vs a
//!   native `extern "C"` function doing the same work;
//! - **code**: programs compiled by clang for BPF and run by the JIT (and by rbpf, for
//!   comparison) vs the same C compiled natively;
//! - **kernel**: XDP programs through the kernel's `BPF_PROG_TEST_RUN` vs this runtime's
//!   `prog_test_run`, both with `repeat`;
//! - **load**: parse + verify + JIT of a corpus object vs the kernel's
//!   `bpf_object__load()` of the same file.

#![warn(missing_docs)]

use serde::Serialize;

/// One measured figure and what it is judged against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// What was measured, e.g. `"jit entry point"`.
    pub name: String,
    /// The figure.
    pub value: f64,
    /// Its unit, e.g. `"ns/call"`.
    pub unit: String,
    /// The reference measured in the same run (e.g. the native call), if any.
    pub reference: Option<Reference>,
}

/// A reference figure from the same run, and the project's target relative to it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reference {
    /// What the reference is, e.g. `"native extern \"C\" call"`.
    pub name: String,
    /// Its figure, in the row's unit.
    pub value: f64,
    /// The target, as text (e.g. `"<= reference + 1.5 ns"`).
    pub target: String,
    /// Whether the row's figure meets the target in this run.
    pub met: bool,
}

/// The rows of one benchmark's quick mode.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// The benchmark (`call`, `code`, `kernel`, `load`).
    pub bench: String,
    /// The figures.
    pub rows: Vec<Row>,
    /// Why part of it could not run here (e.g. no kernel BPF), if so.
    pub skipped: Vec<String>,
}
