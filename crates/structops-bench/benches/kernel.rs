//! Criterion-run wrapper of the **kernel** benchmark (see `structops_bench::kernel`).
//! Each side's figure is the kernel's own `duration` of a `BPF_PROG_TEST_RUN` with
//! `repeat` (and ours of `prog_test_run`), so Criterion's per-iteration statistics do
//! not apply: this prints the figures of one run with 1,000,000 repetitions, side by
//! side. Skips with the reason without root or kernel BPF.

use structops_bench::{Settings, kernel};

fn main() {
    let settings = Settings {
        test_run_repeat: 1_000_000,
        ..Settings::quick()
    };
    let r = kernel::run(&settings);
    for row in &r.rows {
        let reference = row
            .reference
            .as_ref()
            .map(|x| format!("{}: {:.1} {}", x.name, x.value, row.unit))
            .unwrap_or_default();
        println!(
            "{:<90} {:>9.1} {}   {reference}",
            row.name, row.value, row.unit
        );
    }
    for s in &r.skipped {
        println!("skipped: {s}");
    }
}
