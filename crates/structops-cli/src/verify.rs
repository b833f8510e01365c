//! `structops verify FILE.o [--prog NAME] [--log-level 0|1|2]`: each program of an
//! object loaded into a fresh in-process runtime, where `prog_load` runs the verifier,
//! and one row per program the way veristat prints them: verdict, instructions,
//! processed instructions, total and peak states, verification time and the error
//! line of a rejection.
//!
//! The figures come from the verifier's log at `log_level | BPF_LOG_STATS`, as
//! veristat reads the kernel's: the `verification time N usec` and `processed N insns
//! ... total_states N peak_states N` lines. The command fails (exit 1) when any
//! program is rejected.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use structops::loader::{LoadError, ObjectLoader};

use crate::error::CliError;
use crate::host;
use crate::inproc;
use crate::output::Output;

/// `BPF_LOG_STATS`.
const LOG_STATS: u32 = 4;

/// `structops verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The BPF object.
    file: PathBuf,
    /// Verify only this program.
    #[arg(long = "prog", value_name = "NAME")]
    name: Option<String>,
    /// Verifier log level: 0 none, 1 instructions of each path, 2 also register states.
    /// Printed before the table (text) or as `log` (JSON).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2))]
    log_level: u32,
    /// The runtime's host BTF (default: /sys/kernel/btf/vmlinux when readable).
    #[arg(long, value_name = "PATH")]
    btf: Option<PathBuf>,
}

/// One program's verification.
#[derive(Debug, Default, PartialEq, Eq)]
struct Row {
    name: String,
    verified: bool,
    insns: usize,
    processed: Option<u64>,
    total_states: Option<u64>,
    peak_states: Option<u64>,
    usec: Option<u64>,
    error: String,
    log: String,
}

/// The number after `key` in `line` (`processed 12 insns` with key `processed`).
fn field(line: &str, key: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Whether `line` is one of the `BPF_LOG_STATS` lines rather than verifier output.
fn is_stats_line(line: &str) -> bool {
    line.starts_with("processed ")
        || line.starts_with("verification time ")
        || line.starts_with("stack depth ")
}

/// Fills `row`'s figures and error line from a verifier log.
fn read_log(row: &mut Row, log: &str) {
    for line in log.lines() {
        if line.starts_with("processed ") {
            row.processed = field(line, "processed");
            row.total_states = field(line, "total_states");
            row.peak_states = field(line, "peak_states");
        } else if line.starts_with("verification time ") {
            row.usec = field(line, "time");
        }
    }
    if !row.verified {
        row.error = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !is_stats_line(l))
            .unwrap_or_default()
            .to_owned();
    }
    // The log the user asked for, without the stats lines the command added.
    row.log = log
        .lines()
        .filter(|l| !is_stats_line(l))
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        });
}

/// Verifies program `name` of `file` in a fresh runtime.
fn verify_one(
    file: &Path,
    btf: Option<&Path>,
    name: &str,
    insns: usize,
    log_level: u32,
) -> Result<Row, CliError> {
    let mut row = Row {
        name: name.to_owned(),
        insns,
        ..Row::default()
    };
    match inproc::load_with(
        file,
        btf,
        Some(&[name]),
        log_level | LOG_STATS,
        inproc::Engine::Interp,
    ) {
        Ok(l) => {
            row.verified = l.obj.prog(name).is_some_and(|h| h.is_verified());
            if let Some(h) = l.obj.prog(name) {
                row.insns = l.rt.prog_info(h).xlated_prog_len as usize / 8;
            }
            read_log(&mut row, l.obj.log(name).unwrap_or_default());
        }
        Err(CliError::Load(e)) => match *e {
            LoadError::ProgLoad {
                ref prog,
                errno,
                ref log,
                ..
            } => {
                read_log(&mut row, log);
                if prog != name {
                    // Programs an object loads together (a struct_ops map's members)
                    // share the verdict of the first that fails.
                    row.error = format!("'{prog}' (loaded with it): {}", row.error);
                    row.processed = None;
                    row.total_states = None;
                    row.peak_states = None;
                    row.usec = None;
                }
                if row.error.is_empty() {
                    row.error = format!("load failed: {errno}");
                }
            }
            other => return Err(CliError::Load(Box::new(other))),
        },
        Err(e) => return Err(e),
    }
    Ok(row)
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The veristat-style table.
fn table(rows: &[Row]) -> String {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(7);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<7}  {:>6}  {:>9}  {:>12}  {:>11}  {:>9}  Error",
        "Program", "Verdict", "Insns", "Processed", "Total states", "Peak states", "Time (us)"
    );
    for r in rows {
        let line = format!(
            "{:<w$}  {:<7}  {:>6}  {:>9}  {:>12}  {:>11}  {:>9}  {}",
            r.name,
            if r.verified { "success" } else { "failure" },
            r.insns,
            opt(r.processed),
            opt(r.total_states),
            opt(r.peak_states),
            opt(r.usec),
            r.error
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    s
}

/// Runs `structops verify`.
pub fn run(args: &VerifyArgs, out: &Output) -> Result<(), CliError> {
    let path = args.file.display().to_string();
    let bytes = host::read(&args.file)?;
    let loader = ObjectLoader::open(&bytes, &path).map_err(|e| CliError::Load(Box::new(e)))?;
    let progs: Vec<(String, usize)> = loader
        .object()
        .programs()
        .iter()
        .filter(|p| !p.is_subprog())
        .filter(|p| match &args.name {
            Some(n) => p.name() == n,
            None => p.autoload(),
        })
        .map(|p| (p.name().to_owned(), p.insn_cnt()))
        .collect();
    if let Some(n) = &args.name
        && progs.is_empty()
    {
        return Err(CliError::NoSuchProgram {
            name: n.clone(),
            path,
            available: loader
                .object()
                .programs()
                .iter()
                .filter(|p| !p.is_subprog())
                .map(|p| p.name().to_owned())
                .collect(),
        });
    }
    let mut rows = Vec::new();
    for (name, insns) in &progs {
        rows.push(verify_one(
            &args.file,
            args.btf.as_deref(),
            name,
            *insns,
            args.log_level,
        )?);
    }
    if out.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut o = json!({
                    "program": r.name,
                    "verdict": if r.verified { "success" } else { "failure" },
                    "insns": r.insns,
                    "processed_insns": r.processed,
                    "total_states": r.total_states,
                    "peak_states": r.peak_states,
                    "time_usec": r.usec,
                    "error": (!r.verified).then_some(&r.error),
                });
                if args.log_level != 0 {
                    o["log"] = json!(r.log);
                }
                o
            })
            .collect();
        out.json(&json!({ "file": path, "programs": v }))?;
    } else {
        let mut s = String::new();
        if args.log_level != 0 {
            for r in &rows {
                let _ = writeln!(s, "--- {} ---\n{}", r.name, r.log.trim_end());
            }
        }
        s.push_str(&table(&rows));
        out.text(&s)?;
    }
    let rejected = rows.iter().filter(|r| !r.verified).count();
    if rejected > 0 {
        return Err(CliError::Rejected {
            rejected,
            total: rows.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_error_line_come_from_the_log() {
        let mut r = Row::default();
        read_log(
            &mut r,
            "0: (b7) r0 = 0\nR0 !read_ok\nverification time 42 usec\nstack depth 0\n\
             processed 3 insns (limit 1000000) max_states_per_insn 0 total_states 1 \
             peak_states 1 mark_read 0\n",
        );
        assert_eq!(r.processed, Some(3));
        assert_eq!(r.total_states, Some(1));
        assert_eq!(r.peak_states, Some(1));
        assert_eq!(r.usec, Some(42));
        assert_eq!(r.error, "R0 !read_ok");
        assert_eq!(r.log, "0: (b7) r0 = 0\nR0 !read_ok\n");
        let mut ok = Row {
            verified: true,
            ..Row::default()
        };
        read_log(&mut ok, "processed 9 insns total_states 2 peak_states 2\n");
        assert_eq!((ok.processed, ok.error.as_str()), (Some(9), ""));
    }

    #[test]
    fn table_has_one_row_per_program() {
        let rows = [
            Row {
                name: "a".into(),
                verified: true,
                insns: 2,
                processed: Some(2),
                ..Row::default()
            },
            Row {
                name: "bb".into(),
                error: "R1 invalid mem access 'scalar'".into(),
                ..Row::default()
            },
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("a ") && lines[1].contains("success"),
            "{t}"
        );
        assert!(
            lines[2].contains("failure") && lines[2].ends_with("'scalar'"),
            "{t}"
        );
    }
}
