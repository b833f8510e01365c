//! `structops btf dump`: BTF as bpftool prints it (`format raw`, plain or JSON) or as a
//! compilable C header (`format c`).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use object::{Object as _, ObjectSection as _};
use structops_btf::Btf;
use structops_btf::dump::{self, DumpError};

use crate::error::CliError;
use crate::host;
use crate::output::Output;

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
    /// Dump the BTF of a raw BTF file (e.g. /sys/kernel/btf/vmlinux) or a BPF object.
    Dump {
        /// Raw BTF or a BPF ELF object (its .BTF section is dumped).
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Raw)]
        format: Format,
        /// With `--format c`, only this type (by name) and what it needs.
        #[arg(long = "type", value_name = "NAME")]
        type_name: Option<String>,
    },
}

/// Runs a `btf` verb.
pub fn run(cmd: BtfCmd, out: &Output) -> Result<(), CliError> {
    match cmd {
        BtfCmd::Dump {
            file,
            format,
            type_name,
        } => {
            let path = file.display().to_string();
            let bytes = host::read(&file)?;
            let btf = load(&path, &bytes)?;
            let stdout = io::stdout().lock();
            let mut w = BufWriter::with_capacity(1 << 16, stdout);
            let dumped = match (format, &type_name) {
                (Format::Raw, _) if out.json => dump::raw_json(&btf, out.pretty, &mut w),
                (Format::Raw, _) => dump::raw(&btf, &mut w),
                (Format::C, None) => dump::c_header(&btf, &mut w),
                (Format::C, Some(name)) => {
                    let ids = btf.ids_by_name(name).to_vec();
                    if ids.is_empty() {
                        return Err(CliError::NoSuchType {
                            name: name.clone(),
                            path,
                        });
                    }
                    dump::c_header_types(&btf, ids, &mut w)
                }
            };
            dumped.map_err(|e| dump_error(&path, e))?;
            w.flush()?;
            Ok(())
        }
    }
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
