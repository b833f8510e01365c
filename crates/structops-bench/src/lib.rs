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

pub mod call;
pub mod code;
pub mod kernel;
pub mod load;
mod sys;
mod timing;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

pub use timing::ns_per_iter;

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
    /// The project's target, as text (e.g. `"<= reference + 1.5 ns"`); `None` for a
    /// figure shown for context only.
    pub target: Option<String>,
    /// Whether the row's figure meets the target in this run (`None` without a target).
    pub met: Option<bool>,
}

impl Row {
    /// A figure with no reference.
    pub fn plain(name: impl Into<String>, value: f64, unit: impl Into<String>) -> Row {
        Row {
            name: name.into(),
            value,
            unit: unit.into(),
            reference: None,
        }
    }

    /// A figure next to a reference, for context (no target).
    pub fn beside(
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
        reference: impl Into<String>,
        reference_value: f64,
    ) -> Row {
        Row {
            reference: Some(Reference {
                name: reference.into(),
                value: reference_value,
                target: None,
                met: None,
            }),
            ..Row::plain(name, value, unit)
        }
    }

    /// A figure judged against a reference by `target`.
    pub fn judged(
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
        reference: impl Into<String>,
        reference_value: f64,
        target: Target,
    ) -> Row {
        Row {
            reference: Some(Reference {
                name: reference.into(),
                value: reference_value,
                target: Some(target.to_string()),
                met: Some(target.met(value, reference_value)),
            }),
            ..Row::plain(name, value, unit)
        }
    }

    /// The figure divided by its reference's, if it has one and both are positive.
    pub fn ratio(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .filter(|r| r.value > 0.0 && self.value > 0.0)
            .map(|r| self.value / r.value)
    }
}

/// A target relative to a reference figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// At most the reference plus this much (in the row's unit).
    AtMostPlus(f64),
    /// At most the reference times this.
    AtMostTimes(f64),
}

impl Target {
    /// Whether `value` meets the target against `reference`.
    pub fn met(self, value: f64, reference: f64) -> bool {
        match self {
            Target::AtMostPlus(d) => value <= reference + d,
            Target::AtMostTimes(f) => value <= reference * f,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtMostPlus(d) => write!(f, "<= reference + {d}"),
            Target::AtMostTimes(x) => write!(f, "<= {x} x reference"),
        }
    }
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

impl Report {
    /// An empty report of benchmark `bench`.
    pub fn new(bench: &str) -> Report {
        Report {
            bench: bench.to_string(),
            ..Report::default()
        }
    }
}

/// How long the quick modes measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Timed batches per figure; the fastest batch's mean is the figure.
    pub batches: u32,
    /// Length of one batch (the iteration count is calibrated to it).
    pub batch_time: Duration,
    /// `repeat` of each `BPF_PROG_TEST_RUN` (kernel benchmark).
    pub test_run_repeat: u32,
    /// Loads of the corpus object per side (load benchmark).
    pub loads: u32,
}

impl Settings {
    /// The settings of `structops bench`: a few seconds for everything.
    pub fn quick() -> Settings {
        Settings {
            batches: 7,
            batch_time: Duration::from_millis(3),
            test_run_repeat: 100_000,
            loads: 10,
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::quick()
    }
}

/// Why a benchmark could not be set up (as opposed to a part of it that this machine
/// cannot run, which is a [`Report::skipped`] line).
#[derive(Debug, Error)]
pub enum BenchError {
    /// A benchmark object did not parse or relocate.
    #[error("{what}: {source}")]
    Object {
        /// The object and program.
        what: String,
        /// The parser's error.
        #[source]
        source: Box<structops_obj::Error>,
    },
    /// A program did not decode.
    #[error("{what}: {message}")]
    Decode {
        /// The program.
        what: String,
        /// The decoder's message.
        message: String,
    },
    /// JIT compilation or entry point generation failed.
    #[error("{what}: {source}")]
    Jit {
        /// The program.
        what: String,
        /// The JIT's error.
        #[source]
        source: structops_vm::JitError,
    },
    /// Two engines disagree on a program's result: its figures would mean nothing.
    #[error("{what}: {engine} returned {got:#x}, native code {want:#x}")]
    Mismatch {
        /// The program.
        what: String,
        /// The engine.
        engine: &'static str,
        /// Its result.
        got: u64,
        /// The native result.
        want: u64,
    },
}

/// `conformance/build`, where the kernel corpus and libbpf are built
/// (`conformance/build.sh`): `$STRUCTOPS_CONFORMANCE_BUILD` if set, else the one of the
/// source tree this crate was built from.
pub fn conformance_build() -> PathBuf {
    match std::env::var_os("STRUCTOPS_CONFORMANCE_BUILD") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../conformance/build"
        )),
    }
}

/// Geometric mean of positive figures (`None` for none).
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| *v <= 0.0) {
        return None;
    }
    let sum: f64 = values.iter().map(|v| v.ln()).sum();
    Some((sum / values.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ratios() {
        let r = Row::judged("jit", 2.0, "ns", "native", 1.0, Target::AtMostPlus(1.5));
        assert_eq!(r.reference.as_ref().and_then(|r| r.met), Some(true));
        assert_eq!(r.ratio(), Some(2.0));
        let r = Row::judged("jit", 2.0, "ns", "native", 1.0, Target::AtMostTimes(1.3));
        assert_eq!(r.reference.as_ref().and_then(|r| r.met), Some(false));
        assert_eq!(Row::plain("x", 1.0, "us").ratio(), None);
        let g = geomean(&[1.0, 4.0]).unwrap();
        assert!((g - 2.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }
}
