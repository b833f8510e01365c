//! `structops prog dump`: a program's instructions as the loader would submit them —
//! externs resolved, struct_ops bound, CO-RE relocated against the host BTF, subprograms
//! appended — disassembled in bpftool's `dump xlated` style.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;
use structops_btf::Btf;
use structops_isa::{Imm64, Symbolizer, decode, disassemble};
use structops_obj::core_relo::CoreTarget;
use structops_obj::{CoreEngine, ExternHost, LinkedProgram, LoadHost, Object};

use crate::error::CliError;
use crate::host;
use crate::inproc;
use crate::object::open;
use crate::output::Output;

/// `prog` verbs.
#[derive(Debug, Subcommand)]
pub enum ProgCmd {
    /// Disassemble a program after relocation.
    Dump {
        /// The BPF object.
        file: PathBuf,
        /// The program's name.
        #[arg(long = "prog", value_name = "NAME")]
        name: String,
        /// Target BTF for CO-RE and struct_ops (default: /sys/kernel/btf/vmlinux).
        #[arg(long, value_name = "PATH")]
        btf: Option<PathBuf>,
    },
    /// Load an object into an in-process runtime and test-run one program
    /// (`BPF_PROG_TEST_RUN`): prints retval, ns per run and the output data.
    Run {
        /// The BPF object.
        file: PathBuf,
        /// The program's name.
        #[arg(long = "prog", value_name = "NAME")]
        name: String,
        /// The runtime's host BTF (default: /sys/kernel/btf/vmlinux when readable).
        #[arg(long, value_name = "PATH")]
        btf: Option<PathBuf>,
        /// Write the output data to this file.
        #[arg(long, value_name = "FILE")]
        data_out: Option<PathBuf>,
        #[command(flatten)]
        input: inproc::RunInput,
    },
}

/// Runs a `prog` verb.
pub fn run(cmd: ProgCmd, out: &Output) -> Result<(), CliError> {
    match cmd {
        ProgCmd::Run {
            file,
            name,
            btf,
            data_out,
            input,
        } => run_prog(
            &file,
            &name,
            btf.as_deref(),
            data_out.as_deref(),
            &input,
            out,
        ),
        ProgCmd::Dump { file, name, btf } => {
            let path = file.display().to_string();
            let bytes = host::read(&file)?;
            let mut obj = open(&path, &bytes)?;
            select(&mut obj, &name);
            let target = host::target_btf(btf.as_deref())?;
            let linked = relocate(&path, &mut obj, &target)?;
            let Some(prog) = linked.iter().find(|l| l.name == name) else {
                return Err(CliError::NoSuchProgram {
                    name,
                    path,
                    available: linked.iter().map(|l| l.name.clone()).collect(),
                });
            };
            let decoded = decode(&prog.insns).map_err(|source| CliError::Decode {
                name: name.clone(),
                source,
            })?;
            let sym = ObjectSymbols {
                obj: &obj,
                target: &target,
            };
            let text = disassemble(&decoded, &sym);
            if out.json {
                let insns: Vec<_> = prog
                    .insns
                    .iter()
                    .map(|i| json!([i.code, i.dst_reg(), i.src_reg(), i.off, i.imm]))
                    .collect();
                out.json(&json!({
                    "name": prog.name,
                    "insn_cnt": prog.insns.len(),
                    "insns": insns,
                    "xlated": text.lines().map(str::trim_start).collect::<Vec<_>>(),
                }))
            } else {
                out.text(&text)
            }
        }
    }
}

/// `prog run`.
fn run_prog(
    file: &std::path::Path,
    name: &str,
    btf: Option<&std::path::Path>,
    data_out: Option<&std::path::Path>,
    input: &inproc::RunInput,
    out: &Output,
) -> Result<(), CliError> {
    let loaded = inproc::load(file, btf, Some(&[name]))?;
    let Some(prog) = loaded.obj.prog(name) else {
        return Err(CliError::NoSuchProgram {
            name: name.to_string(),
            path: file.display().to_string(),
            available: loaded.obj.progs().map(|(n, _)| n.to_string()).collect(),
        });
    };
    let r = inproc::run(&loaded, name, prog, input)?;
    if let (Some(path), Some(data)) = (data_out, &r.data_out) {
        std::fs::write(path, data).map_err(|source| CliError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let trace: Vec<String> = loaded
        .trace
        .lock()
        .map(|t| t.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if out.json {
        return out.json(&json!({
            "name": name,
            "retval": r.retval,
            "duration_ns": r.duration,
            "repeat": r.repeat,
            "data_size_out": r.data_out.as_ref().map(Vec::len),
            "data_out": r.data_out.as_deref().map(hex),
            "ctx_out": r.ctx_out.as_deref().map(hex),
            "trace": trace,
        }));
    }
    let mut s = format!(
        "retval: {} ({:#x})\nduration: {} ns/run ({} run{})\n",
        r.retval,
        r.retval,
        r.duration,
        r.repeat,
        if r.repeat == 1 { "" } else { "s" }
    );
    if let Some(d) = &r.data_out {
        s.push_str(&format!("data_out: {} bytes\n", d.len()));
        s.push_str(&inproc::hexdump(d));
    }
    if let Some(c) = &r.ctx_out {
        s.push_str(&format!("ctx_out: {} bytes\n", c.len()));
        s.push_str(&inproc::hexdump(c));
    }
    if !trace.is_empty() {
        s.push_str("trace:\n");
        for line in &trace {
            s.push_str(&format!("  {}\n", line.trim_end()));
        }
    }
    out.text(&s)
}

/// Makes sure the program named explicitly gets loaded even if its section says `?`
/// (autoload off): sets its autoload, and — since libbpf derives a struct_ops program's
/// autoload from its maps — creates the struct_ops maps that use it.
fn select(obj: &mut Object, name: &str) {
    let Some(idx) = obj.program_index(name) else {
        return;
    };
    if let Some(p) = obj.program_mut(name) {
        p.set_autoload(true);
    }
    for map in obj.maps_mut() {
        let uses = map
            .struct_ops()
            .is_some_and(|st| st.programs().contains(&Some(idx)));
        if uses {
            map.set_autocreate(true);
        }
    }
}

/// Runs every load-time step of the loader with this host's facts. Map references get
/// the map's index as their handle, so the disassembly can name them.
pub fn relocate(
    path: &str,
    obj: &mut Object,
    target: &Btf,
) -> Result<Vec<LinkedProgram>, CliError> {
    let kconfig = host::system_kconfig();
    let ksyms = host::HostKsyms::new(target);
    let core_target = CoreTarget::new(target);
    let core = CoreEngine::new(&core_target);
    let host = LoadHost {
        target_btf: target,
        externs: ExternHost {
            kernel_version: host::kernel_version(),
            has_bpf_cookie: true,
            has_syscall_wrapper: true,
            extra_kconfig: None,
            system_kconfig: kconfig.as_deref(),
            ksyms: &ksyms,
        },
        core: &core,
        map_handle: &|idx| idx as i32,
    };
    obj.load(&host).map_err(|source| CliError::Relocate {
        path: path.to_string(),
        source: Box::new(source),
    })
}

/// Names maps by the object's map names and kfuncs by the target BTF.
struct ObjectSymbols<'a> {
    obj: &'a Object,
    target: &'a Btf,
}

impl ObjectSymbols<'_> {
    fn map_name(&self, handle: i32) -> String {
        usize::try_from(handle)
            .ok()
            .and_then(|i| self.obj.maps().get(i))
            .map_or_else(|| format!("idx:{handle}"), |m| m.name().to_string())
    }
}

impl Symbolizer for ObjectSymbols<'_> {
    fn kfunc(&self, _pc: usize, btf_id: u32, btf_fd_idx: i16) -> Option<String> {
        if btf_fd_idx != 0 {
            return None;
        }
        self.target.type_name(btf_id).ok().map(str::to_owned)
    }

    fn imm64(&self, _pc: usize, imm: &Imm64) -> Option<String> {
        match *imm {
            Imm64::MapFd { fd } => Some(format!("map[{}]", self.map_name(fd))),
            Imm64::MapValue { fd, offset } => {
                Some(format!("map[{}][0]+{offset}", self.map_name(fd)))
            }
            Imm64::BtfId { btf_id, btf_fd: 0 } => self
                .target
                .type_name(btf_id)
                .ok()
                .map(|n| format!("btf[{n}]")),
            _ => None,
        }
    }
}
