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
mod map;
mod object;
mod output;
mod prog;
mod struct_ops;
mod tcp;
mod verify;

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
    /// Dump the maps of an object loaded into an in-process runtime.
    #[command(subcommand)]
    Map(map::MapCmd),
    /// Register the struct_ops maps of an object in-process: each program's load
    /// result, each map's attach result, the registered values.
    #[command(subcommand, name = "struct_ops")]
    StructOps(struct_ops::StructOpsCmd),
    /// Verify the programs of an object in-process, one row per program (veristat).
    Verify(verify::VerifyArgs),
    /// Quick benchmarks of this runtime on this machine, each figure next to its
    /// reference from the same run.
    Bench(bench::BenchArgs),
    /// TCP congestion control: simulate flows running BPF or native congestion controls.
    #[command(subcommand)]
    Tcp(tcp::TcpCmd),
}

fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.json || cli.pretty, cli.pretty);
    match cli.noun {
        Noun::Object(cmd) => object::run(cmd, &out),
        Noun::Btf(cmd) => btf::run(cmd, &out),
        Noun::Prog(cmd) => prog::run(cmd, &out),
        Noun::Map(cmd) => map::run(cmd, &out),
        Noun::StructOps(cmd) => struct_ops::run(cmd, &out),
        Noun::Verify(args) => verify::run(&args, &out),
        Noun::Bench(args) => bench::run(&args, &out),
        Noun::Tcp(cmd) => tcp::run(cmd, &out),
    }
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
