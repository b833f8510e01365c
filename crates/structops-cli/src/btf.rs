//! `structops btf`: `show` lists BTF objects; `dump` prints BTF as bpftool prints it (`format raw`, plain or JSON) or as a
//! compilable C header (`format c`).

use std::io::{self, BufWriter, Write};
use std::path::Path;

use clap::{Subcommand, ValueEnum};
use object::{Object as _, ObjectSection as _};
use serde_json::Value;
use structops_btf::Btf;
use structops_btf::dump::{self, DumpError};
use structops_control::BtfEntry;

use crate::error::CliError;
use crate::host;
use crate::inproc::Engine;
use crate::live::{self, Conn, Sel};
use crate::output::Output;
use crate::prog;

/// `btf dump` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Every type with its id, as `bpftool btf dump ... format raw`.
    Raw,
    /// A C header defining every type.
    C,
}

/// `btf` verbs.
#[derive(Debug, Subcommand)]
pub enum BtfCmd {
    /// List BTF objects (`bpftool btf show`): a host's (--host), or those of the
    /// runtime FILE is loaded into in this process (the host BTF and the object's).
    #[command(override_usage = "structops [--host PATH] btf show [FILE] [id N]")]
    Show {
        /// `[FILE] [id N]`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
    },
    /// Dump BTF: of a raw BTF file (e.g. /sys/kernel/btf/vmlinux) or a BPF object, or
    /// with --host the host's BTF object `id N`.
    #[command(
        override_usage = "structops btf dump FILE [--format raw|c] [--type NAME]\n       \
                                structops --host PATH btf dump id N [--format raw|c] [--type NAME]"
    )]
    Dump {
        /// Raw BTF or a BPF ELF object (its .BTF section is dumped), or `id N`.
        #[arg(value_name = "SPEC", required = true)]
        words: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Raw)]
        format: Format,
        /// With `--format c`, only this type (by name) and what it needs.
        #[arg(long = "type", value_name = "NAME")]
        type_name: Option<String>,
    },
}

/// Runs a `btf` verb.
pub fn run(cmd: BtfCmd, host_path: Option<&Path>, out: &Output) -> Result<(), CliError> {
    match cmd {
        BtfCmd::Show { words } => {
            let spec = prog::spec(&words, None, &["btf", "show"])?;
            let mut conn = Conn::open(host_path, spec.file.as_deref(), None, Engine::Jit)?;
            let all = conn.btfs()?;
            let shown: Vec<&BtfEntry> = match &spec.sel {
                Some(sel @ Sel::Id(_)) => live::select(&all, sel, "btf", |b| (b.id, ""))?,
                Some(Sel::Name(_)) => {
                    return Err(CliError::Usage {
                        command: &["btf", "show"],
                        message: "name a BTF object by `id N`".into(),
                    });
                }
                None => all.iter().collect(),
            };
            if out.json {
                out.json(&Value::Array(
                    shown.iter().map(|b| live::btf_json(b)).collect(),
                ))
            } else {
                out.text(&shown.iter().map(|b| live::btf_text(b)).collect::<String>())
            }
        }
        BtfCmd::Dump {
            words,
            format,
            type_name,
        } => {
            let spec = prog::spec(&words, None, &["btf", "dump"])?;
            let (path, btf) = match (host_path, spec.file, spec.sel) {
                (None, Some(file), None) => {
                    let path = file.display().to_string();
                    let bytes = host::read(&file)?;
                    let btf = load(&path, &bytes)?;
                    (path, btf)
                }
                (Some(h), None, Some(Sel::Id(id))) => {
                    let mut conn = Conn::remote(h)?;
                    let raw = conn.btf(id)?;
                    let path = format!("btf id {id}");
                    let btf = Btf::parse(&raw).map_err(|source| CliError::Btf {
                        path: path.clone(),
                        source,
                    })?;
                    (path, btf)
                }
                _ => {
                    return Err(CliError::Usage {
                        command: &["btf", "dump"],
                        message: "give a FILE, or --host PATH with `id N`".into(),
                    });
                }
            };
            dump_btf(&path, &btf, format, type_name.as_deref(), out)
        }
    }
}

/// Prints `btf` in `format`.
fn dump_btf(
    path: &str,
    btf: &Btf,
    format: Format,
    type_name: Option<&str>,
    out: &Output,
) -> Result<(), CliError> {
    let stdout = io::stdout().lock();
    let mut w = BufWriter::with_capacity(1 << 16, stdout);
    let dumped = match (format, type_name) {
        (Format::Raw, _) if out.json => dump::raw_json(btf, out.pretty, &mut w),
        (Format::Raw, _) => dump::raw(btf, &mut w),
        (Format::C, None) => dump::c_header(btf, &mut w),
        (Format::C, Some(name)) => {
            let ids = btf.ids_by_name(name).to_vec();
            if ids.is_empty() {
                return Err(CliError::NoSuchType {
                    name: name.to_string(),
                    path: path.to_string(),
                });
            }
            dump::c_header_types(btf, ids, &mut w)
        }
    };
    dumped.map_err(|e| dump_error(path, e))?;
    w.flush()?;
    Ok(())
}

fn dump_error(path: &str, e: DumpError) -> CliError {
    match e {
        DumpError::Io { source } if source.kind() == io::ErrorKind::BrokenPipe => {
            CliError::BrokenPipe
        }
        source => CliError::Dump {
            path: path.to_string(),
            source,
        },
    }
}

/// The BTF in `bytes`: the whole file if it is raw BTF, else the `.BTF` section of an
/// ELF object, taken as stored (as bpftool's `btf__parse_elf` does).
pub fn load(path: &str, bytes: &[u8]) -> Result<Btf, CliError> {
    let raw = if bytes.starts_with(b"\x7fELF") {
        let elf_err = |source| CliError::Elf {
            path: path.to_string(),
            source,
        };
        let elf = object::File::parse(bytes).map_err(elf_err)?;
        let section = elf.section_by_name(".BTF").ok_or_else(|| CliError::NoBtf {
            path: path.to_string(),
        })?;
        section.data().map_err(elf_err)?
    } else {
        bytes
    };
    Btf::parse(raw).map_err(|source| CliError::Btf {
        path: path.to_string(),
        source,
    })
}
