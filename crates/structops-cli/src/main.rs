//! `structops`: inspect BPF objects and BTF the way bpftool does, before (and, with the
//! runtime, after) they are loaded into an embedding host.
//!
//! Exit codes: 0 on success, 1 when the command failed (the error names the step, the
//! errno where there is one, and a hint), 2 for usage errors (from clap).

mod bench;
mod btf;
mod error;
mod host;
mod inproc;
mod link;
mod live;
mod logger;
mod map;
mod object;
mod output;
mod prog;
mod struct_ops;
mod tcp;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::CliError;
use crate::output::Output;

/// The structops command line, modelled on bpftool's `NOUN VERB` layout.
#[derive(Debug, Parser)]
#[command(
    name = "structops",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 on success; 1 when the command failed (the message names the \
                  failing step, the errno name and a hint); 2 on a usage error."
)]
struct Cli {
    /// Print JSON instead of text (bpftool's `-j`).
    #[arg(short = 'j', long, global = true)]
    json: bool,
    /// Print pretty JSON (bpftool's `-p`; implies --json).
    #[arg(short = 'p', long, global = true)]
    pretty: bool,
    /// Work on the running host serving this control socket instead of on a FILE
    /// loaded into this process (see `Runtime::serve` and `structops tcp serve`).
    #[arg(long, global = true, value_name = "PATH")]
    host: Option<PathBuf>,
    #[command(subcommand)]
    noun: Noun,
}

#[derive(Debug, Subcommand)]
enum Noun {
    /// Inspect BPF ELF objects.
    #[command(subcommand)]
    Object(object::ObjectCmd),
    /// Dump BTF from raw BTF files or BPF objects.
    #[command(subcommand)]
    Btf(btf::BtfCmd),
    /// Inspect the programs of a BPF object, or test-run them in-process.
    #[command(subcommand)]
    Prog(prog::ProgCmd),
    /// List, dump, look up, update and delete map elements.
    #[command(subcommand)]
    Map(map::MapCmd),
    /// List, dump, register and unregister struct_ops tables.
    #[command(subcommand, name = "struct_ops")]
    StructOps(struct_ops::StructOpsCmd),
    /// A running host's links: show, detach, update (hot swap).
    #[command(subcommand)]
    Link(link::LinkCmd),
    /// Verify the programs of an object in-process, one row per program (veristat).
    Verify(verify::VerifyArgs),
    /// Quick benchmarks of this runtime on this machine, each figure next to its
    /// reference from the same run.
    Bench(bench::BenchArgs),
    /// TCP congestion control: simulate flows running BPF or native congestion controls.
    #[command(subcommand)]
    Tcp(tcp::TcpCmd),
    /// A running host's own status (its embedder's status hook), as JSON.
    Status,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.json || cli.pretty, cli.pretty);
    let host = cli.host.as_deref();
    let local_only = |noun: &'static str| -> Result<(), CliError> {
        match host {
            Some(_) => Err(CliError::Unsupported {
                what: format!("{noun} works on files in this process, not on a host (--host)"),
            }),
            None => Ok(()),
        }
    };
    match cli.noun {
        Noun::Object(cmd) => {
            local_only("object")?;
            object::run(cmd, &out)
        }
        Noun::Btf(cmd) => btf::run(cmd, host, &out),
        Noun::Prog(cmd) => prog::run(cmd, host, &out),
        Noun::Map(cmd) => map::run(cmd, host, &out),
        Noun::StructOps(cmd) => struct_ops::run(cmd, host, &out),
        Noun::Link(cmd) => link::run(cmd, host, &out),
        Noun::Verify(args) => {
            local_only("verify")?;
            verify::run(&args, &out)
        }
        Noun::Bench(args) => {
            local_only("bench")?;
            bench::run(&args, &out)
        }
        Noun::Tcp(cmd) => {
            local_only("tcp")?;
            tcp::run(cmd, &out)
        }
        Noun::Status => status(host, &out),
        Noun::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "structops", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// `structops --host PATH status`: the host's status JSON (pretty unless `-j`).
fn status(host: Option<&std::path::Path>, out: &Output) -> Result<(), CliError> {
    let Some(h) = host else {
        return Err(CliError::NeedsHost { command: "status" });
    };
    let text = live::Conn::remote(h)?.status()?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| CliError::Unsupported {
        what: format!("the host's status is not JSON: {e}"),
    })?;
    if out.json {
        out.json(&v)
    } else {
        out.text(&status_text(&v))
    }
}

/// A status as text: pretty JSON, except that a `flows` array (the TCP host's) is a
/// table of its main columns, after the other top-level scalars.
fn status_text(v: &serde_json::Value) -> String {
    const COLS: [(&str, &str); 7] = [
        ("id", "flow"),
        ("cc", "cc"),
        ("map_id", "map"),
        ("cwnd", "cwnd"),
        ("srtt_us", "srtt_us"),
        ("goodput_mbps", "Mbit/s"),
        ("retransmits", "retrans"),
    ];
    let (Some(obj), Some(flows)) = (v.as_object(), v.get("flows").and_then(|f| f.as_array()))
    else {
        return format!("{v:#}\n");
    };
    let cell = |x: Option<&serde_json::Value>| match x {
        Some(serde_json::Value::String(t)) => t.clone(),
        Some(serde_json::Value::Number(n)) if n.is_f64() => {
            format!("{:.2}", n.as_f64().unwrap_or_default())
        }
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(x) => x.to_string(),
    };
    let mut s = String::new();
    for (k, x) in obj {
        match x {
            serde_json::Value::Array(_)
            | serde_json::Value::Object(_)
            | serde_json::Value::Null => {}
            x => s.push_str(&format!("{k}: {}\n", cell(Some(x)))),
        }
    }
    if let Some(a) = v.get("available").and_then(|a| a.as_array()) {
        let names: Vec<String> = a
            .iter()
            .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_string))
            .collect();
        s.push_str(&format!("available: {}\n", names.join(" ")));
    }
    if !s.is_empty() {
        s.push('\n');
    }
    s.push_str(&format!(
        "{:>4}  {:<12} {:>5} {:>6} {:>9} {:>8} {:>8}\n",
        COLS[0].1, COLS[1].1, COLS[2].1, COLS[3].1, COLS[4].1, COLS[5].1, COLS[6].1
    ));
    for f in flows {
        let c: Vec<String> = COLS.iter().map(|(k, _)| cell(f.get(*k))).collect();
        s.push_str(&format!(
            "{:>4}  {:<12} {:>5} {:>6} {:>9} {:>8} {:>8}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        ));
    }
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json || cli.pretty;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(CliError::Usage { command, message }) => usage_error(command, &message),
        Err(e) => {
            e.report(json);
            ExitCode::FAILURE
        }
    }
}

/// Reports a usage error found after parsing as clap reports its own (the subcommand's
/// usage line, exit status 2).
fn usage_error(path: &[&str], message: &str) -> ExitCode {
    let mut sub = Cli::command();
    sub.build();
    for name in path {
        match sub.find_subcommand(name) {
            Some(s) => sub = s.clone(),
            None => break,
        }
    }
    let _ = sub
        .error(clap::error::ErrorKind::ValueValidation, message)
        .print();
    ExitCode::from(2)
}
