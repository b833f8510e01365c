//! `structops bench [call|code|kernel|load]... [--json]`: the quick modes of the
//! benchmarks of `structops-bench`, so a user can judge the runtime on their machine.
//! Every figure is printed next to its reference measured in the same run, with the
//! project's target and whether this run meets it.

use clap::{Args, ValueEnum};
use structops_bench::{Report, Settings};

use crate::error::CliError;
use crate::output::Output;

/// One benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Calling a struct_ops member: JIT and interpreter entry points vs a native
    /// extern "C" call through a function pointer (target: JIT <= native + 1.5 ns).
    Call,
    /// Code quality: four C kernels compiled by clang for BPF and run by the JIT, the
    /// interpreter and rbpf, vs the same C compiled natively (target: geometric mean of
    /// JIT / native <= 1.3).
    Code,
    /// XDP programs through the kernel's BPF_PROG_TEST_RUN vs our prog_test_run, both
    /// with repeat (target: ours <= kernel; needs root and kernel BPF).
    Kernel,
    /// JIT compile time per program and instruction; load of the corpus bpf_cubic.bpf.o
    /// vs libbpf's bpf_object__load (target: <= 25 % of the kernel's; needs
    /// conformance/build).
    Load,
}

/// `structops bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Build with --release for meaningful figures. Parts that need the kernel \
                  (root, BPF) or the conformance corpus (conformance/build.sh; \
                  STRUCTOPS_CONFORMANCE_BUILD overrides its path) are skipped with the \
                  reason. Use --json for machine-readable output. The criterion suites \
                  behind these figures: cargo bench -p structops-bench."
)]
pub struct BenchArgs {
    /// The benchmarks to run (all four when none is named).
    #[arg(value_enum)]
    pub which: Vec<Which>,
}

/// Runs the named benchmarks and prints their reports.
pub fn run(args: &BenchArgs, out: &Output) -> Result<(), CliError> {
    let all = [Which::Call, Which::Code, Which::Kernel, Which::Load];
    let which: &[Which] = if args.which.is_empty() {
        &all
    } else {
        &args.which
    };
    let settings = Settings::quick();
    let mut reports = Vec::new();
    for w in which {
        let report = match w {
            Which::Call => structops_bench::call::run(&settings)?,
            Which::Code => structops_bench::code::run(&settings)?,
            Which::Kernel => structops_bench::kernel::run(&settings),
            Which::Load => structops_bench::load::run(&settings),
        };
        if !out.json {
            out.text(&text(&report))?;
        }
        reports.push(report);
    }
    if out.json {
        let v = serde_json::to_value(&reports).map_err(|e| CliError::Unsupported {
            what: format!("JSON encoding of the reports: {e}"),
        })?;
        out.json(&v)?;
    }
    Ok(())
}

/// A report as text: one line per figure, its reference, the target and its verdict.
fn text(r: &Report) -> String {
    let mut s = format!("== {}\n", r.bench);
    for row in &r.rows {
        let figure = format!("{:.2} {}", row.value, row.unit);
        s.push_str(&format!("{:<72} {:>16}", row.name, figure));
        if let Some(x) = &row.reference {
            s.push_str(&format!("   vs {} {:.2}", x.name, x.value));
            if let Some(ratio) = row.ratio()
                && row.unit != "x"
            {
                s.push_str(&format!(" ({ratio:.2}x)"));
            }
            if let (Some(t), Some(met)) = (&x.target, x.met) {
                s.push_str(&format!(
                    "   target {t}: {}",
                    if met { "met" } else { "not met" }
                ));
            }
        }
        s.push('\n');
    }
    for k in &r.skipped {
        s.push_str(&format!("skipped: {k}\n"));
    }
    s
}
