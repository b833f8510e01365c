//! The CLI's in-process runtime: `prog run` and `map dump` load an object into a
//! [`structops::Runtime`] living in this process, run programs there, and read the maps
//! back — the kernel is never involved.
//!
//! The runtime's host BTF (its "vmlinux") is `--btf PATH` or, by default, the running
//! kernel's `/sys/kernel/btf/vmlinux` when it is readable, so objects written for the
//! kernel's types relocate as they would there. `__kconfig` externs see this machine's
//! kernel configuration (as libbpf would on this host), `__ksym` functions resolve to
//! the host BTF's `FUNC`s and typeless ksyms to `/proc/kallsyms`.
//!
//! The runtime registers the bundled ops types whose host exists — today
//! `bpf_dummy_ops`, when the host BTF declares it — so struct_ops programs written for
//! them verify with the kernel's rules and `prog run` test-runs them as
//! `bpf_struct_ops_test_run` does. struct_ops programs of other ops types are refused
//! (`ENOTSUPP`), as by a kernel that lacks the type.
//!
//! Every program is verified when it loads, as in the kernel: a program the verifier
//! rejects does not load, and the command fails with the verifier's error line (and
//! the load log as a hint). Verified programs run unchecked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{Args, ValueEnum};
use structops::helpers::HostFn;
use structops::loader::{LoadOptions, LoadedObject, ObjectLoader};
use structops::prog::collecting_sink;
use structops::{Errno, KfuncFlags, ProgHandle, RunMode, Runtime, RuntimeConfig, TestRun};
use structops_btf::{Btf, Kind};

use crate::error::CliError;
use crate::host;

/// How verified programs execute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The reference interpreter.
    Interp,
    /// Native code from the Cranelift JIT (the default).
    #[default]
    Jit,
}

impl From<Engine> for structops::Engine {
    fn from(e: Engine) -> structops::Engine {
        match e {
            Engine::Interp => structops::Engine::Interp,
            Engine::Jit => structops::Engine::Jit,
        }
    }
}

/// What to run a program on: the options `prog run` and `map dump --run` share.
#[derive(Clone, Debug, Default, Args)]
pub struct RunInput {
    /// struct_ops (and other u64-array context) arguments, comma-separated; decimal or
    /// 0x-prefixed hex.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = parse_u64)]
    pub args: Vec<u64>,
    /// Packet bytes for XDP and skb programs.
    #[arg(long, value_name = "FILE")]
    pub data_in: Option<PathBuf>,
    /// Context bytes (`struct xdp_md`, `struct __sk_buff`).
    #[arg(long, value_name = "FILE")]
    pub ctx_in: Option<PathBuf>,
    /// Run this many times (the duration is the mean per run).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Execution engine of verified programs.
    #[arg(long, value_enum, default_value_t = Engine::Jit)]
    pub engine: Engine,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t
            .parse::<u64>()
            .or_else(|_| t.parse::<i64>().map(|v| v as u64)),
    };
    parsed.map_err(|_| format!("'{s}' is not a number (decimal, negative, or 0x hex)"))
}

/// An object loaded into a fresh in-process runtime.
pub struct Loaded {
    /// The runtime.
    pub rt: Arc<Runtime>,
    /// The object's maps and programs.
    pub obj: LoadedObject,
    /// What `bpf_trace_printk`/`bpf_printk` wrote.
    pub trace: Arc<Mutex<Vec<String>>>,
}

/// Loads `file` into a new runtime with its maps and, among its programs, only those
/// named in `progs` (all of them when `progs` is `None`).
/// Verified programs run on `engine`.
pub fn load(
    file: &Path,
    btf: Option<&Path>,
    progs: Option<&[&str]>,
    engine: Engine,
) -> Result<Loaded, CliError> {
    load_with(file, btf, progs, 0, engine)
}

/// [`load`] with each program loaded at verifier `log_level` (logs kept in the
/// loaded object when it is not 0).
pub fn load_with(
    file: &Path,
    btf: Option<&Path>,
    progs: Option<&[&str]>,
    log_level: u32,
    engine: Engine,
) -> Result<Loaded, CliError> {
    let path = file.display().to_string();
    let bytes = host::read(file)?;
    let rt = Arc::new(Runtime::new(RuntimeConfig {
        engine: engine.into(),
        ..RuntimeConfig::default()
    }));
    let (sink, trace) = collecting_sink();
    rt.set_trace_sink(Some(sink));
    let target = match btf {
        Some(p) => Some(host::target_btf(Some(p))?),
        None => std::fs::read(host::VMLINUX_BTF)
            .ok()
            .and_then(|b| Btf::parse(&b).ok()),
    };
    if let Some(t) = target {
        let has_dummy_ops = t
            .find_by_name_kind(structops::struct_ops::dummy::NAME, Kind::Struct)
            .is_some();
        rt.register_host_btf(t).map_err(|errno| CliError::Runtime {
            step: "registering the host BTF".into(),
            errno,
        })?;
        // The bundled ops types whose host exists: bpf_dummy_ops, when the host BTF
        // declares it (vmlinux does). tcp_congestion_ops follows with its host.
        if has_dummy_ops {
            rt.register_dummy_ops().map_err(|errno| CliError::Runtime {
                step: "registering bpf_dummy_ops".into(),
                errno,
            })?;
        }
        register_rcu_kfuncs(&rt)?;
    }
    let mut loader = ObjectLoader::open(&bytes, &path).map_err(load_err)?;
    if let Some(names) = progs {
        if let Some(name) = names.iter().find(|n| loader.object().program(n).is_none()) {
            return Err(CliError::NoSuchProgram {
                name: name.to_string(),
                path,
                available: loader
                    .object()
                    .programs()
                    .iter()
                    .filter(|p| !p.is_subprog())
                    .map(|p| p.name().to_string())
                    .collect(),
            });
        }
        loader.select_programs(names);
    }
    let kconfig = host::system_kconfig();
    let host_btf = rt.host_btf();
    let empty = structops_btf::BtfBuilder::new().build();
    let ksyms = host::HostKsyms::new(host_btf.as_ref().map_or(&empty, |h| h.object().btf()));
    let opts = LoadOptions {
        kconfig: kconfig.as_deref(),
        ksyms: Some(&ksyms),
        kernel_version: Some(host::kernel_version()),
        log_level,
        keep_logs: log_level != 0,
        ..LoadOptions::default()
    };
    let obj = loader.load(&rt, &opts).map_err(load_err)?;
    Ok(Loaded { rt, obj, trace })
}

/// `bpf_rcu_read_lock` / `bpf_rcu_read_unlock`, the kernel's generic kfuncs every
/// program type may call, when the host BTF declares them. A program here always runs
/// inside the runtime's read-side section (the epoch pin a run or a member call holds,
/// the runtime's `rcu_read_lock`), so the section a program opens explicitly needs no
/// work of its own; the verifier still checks that it is balanced.
fn register_rcu_kfuncs(rt: &Runtime) -> Result<(), CliError> {
    for name in ["bpf_rcu_read_lock", "bpf_rcu_read_unlock"] {
        let inside_the_run_section: HostFn = Arc::new(|_, _| Ok(0));
        match rt.register_kfunc(name, KfuncFlags::NONE, Vec::new(), inside_the_run_section) {
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(errno) => {
                return Err(CliError::Runtime {
                    step: format!("registering kfunc {name}"),
                    errno,
                });
            }
        }
    }
    Ok(())
}

fn load_err(e: structops::loader::LoadError) -> CliError {
    CliError::Load(Box::new(e))
}

/// The result of one `prog_test_run`.
pub struct RunResult {
    /// The program's return value.
    pub retval: u32,
    /// Mean ns per run.
    pub duration: u32,
    /// Runs made.
    pub repeat: u32,
    /// Output packet, when the program type has one.
    pub data_out: Option<Vec<u8>>,
    /// Output context, when one was given.
    pub ctx_out: Option<Vec<u8>>,
}

/// Runs `prog` of `l` on `input`.
pub fn run(
    l: &Loaded,
    name: &str,
    prog: &ProgHandle,
    input: &RunInput,
) -> Result<RunResult, CliError> {
    let data = match &input.data_in {
        Some(p) => Some(host::read(p)?),
        None => None,
    };
    let ctx = match &input.ctx_in {
        Some(p) => Some(host::read(p)?),
        None => None,
    };
    let mut t = if !input.args.is_empty() {
        TestRun::with_args(&input.args)
    } else if let Some(c) = &ctx {
        TestRun::with_ctx(c)
    } else {
        TestRun::default()
    };
    if let Some(d) = data {
        t.data_in = d;
        t.data_out = Some(Vec::new());
    }
    t.repeat = input.repeat;
    t.mode = RunMode::Auto;
    l.rt.prog_test_run(prog, &mut t)
        .map_err(|errno| CliError::Run {
            prog: name.to_string(),
            errno,
            fault: t.fault.as_ref().map(ToString::to_string),
        })?;
    Ok(RunResult {
        retval: t.retval,
        duration: t.duration,
        repeat: input.repeat.max(1),
        data_out: t.data_out,
        ctx_out: t.ctx_out,
    })
}

/// Bytes as `hexdump -C`-like lines: offset, 16 hex bytes, printable ASCII.
pub fn hexdump(data: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        s.push_str(&format!(
            "{:08x}  {:<47}  |{ascii}|\n",
            i * 16,
            hex.join(" ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_in_every_accepted_form() {
        assert_eq!(parse_u64("42"), Ok(42));
        assert_eq!(parse_u64("0x2a"), Ok(42));
        assert_eq!(parse_u64("-1"), Ok(u64::MAX));
        assert!(parse_u64("forty").is_err());
        assert!(parse_u64("0xzz").is_err());
        assert!(parse_u64("").is_err());
    }

    #[test]
    fn hexdump_shows_offsets_bytes_and_text() {
        let d = hexdump(b"ABCDEFGHIJKLMNOPq\x00");
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("00000000  41 42"), "{d}");
        assert!(lines[0].ends_with("|ABCDEFGHIJKLMNOP|"), "{d}");
        assert!(lines[1].starts_with("00000010  71 00"), "{d}");
        assert!(lines[1].ends_with("|q.|"), "{d}");
    }
}
