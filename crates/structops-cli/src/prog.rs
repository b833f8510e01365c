//! `structops prog`: list programs, dump their instructions (as the loader would submit
//! them — externs resolved, struct_ops bound, CO-RE relocated against the host BTF,
//! subprograms appended — or as a running host runs them) in bpftool's `dump xlated`
//! style, dump their native code, and test-run them in-process.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use structops_btf::Btf;
use structops_control::{ProgEntry, XlatedProg};
use structops_isa::{Imm64, Insn, Symbolizer, decode, disassemble};
use structops_obj::core_relo::CoreTarget;
use structops_obj::{CoreEngine, ExternHost, LinkedProgram, LoadHost, Object};

use crate::error::CliError;
use crate::host;
use crate::inproc::{self, Engine};
use crate::live::{self, Conn, Sel, Spec};
use crate::object::open;
use crate::output::Output;

/// `prog` verbs.
#[derive(Debug, Subcommand)]
pub enum ProgCmd {
    /// List programs (`bpftool prog show`): a host's (--host), or those of FILE loaded
    /// into a runtime in this process (every program is verified and loaded).
    #[command(override_usage = "structops prog show [FILE] [id N | name NAME]")]
    Show {
        /// `[FILE] [id N | name NAME]`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
        /// The in-process runtime's host BTF (default: /sys/kernel/btf/vmlinux).
        #[arg(long, value_name = "PATH")]
        btf: Option<PathBuf>,
    },
    /// Print a program's instructions (`dump xlated`) or native code (`dump jited`).
    #[command(subcommand)]
    Dump(DumpCmd),
    /// Test-run one program (`BPF_PROG_TEST_RUN`): of FILE, loaded into an in-process
    /// runtime, or with --host a running host's program. Prints retval, ns per run and
    /// the output data.
    #[command(
        override_usage = "structops prog run FILE --prog NAME [OPTIONS]\n       \
                                structops --host PATH prog run (id N | name NAME) [OPTIONS]"
    )]
    Run {
        /// `FILE`, or with --host `id N` / `name NAME`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
        /// The program's name (the same as `name NAME`).
        #[arg(long = "prog", value_name = "NAME")]
        name: Option<String>,
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

/// `prog dump` forms.
#[derive(Debug, Subcommand)]
pub enum DumpCmd {
    /// Translated instructions, in bpftool's `prog dump xlated` format. With FILE: as
    /// the loader would submit them (relocated against the target BTF, not verified),
    /// maps named by the object's names. With --host: as the host runs them.
    #[command(
        override_usage = "structops prog dump xlated (FILE --prog NAME | FILE name NAME | \
                                --host PATH id N | --host PATH name NAME)"
    )]
    Xlated(DumpArgs),
    /// Native code from the JIT, in Intel syntax like `bpftool prog dump jited`. With
    /// FILE the object is loaded into an in-process runtime (the program must pass the
    /// verifier).
    #[command(
        override_usage = "structops prog dump jited (FILE --prog NAME | FILE name NAME | \
                                --host PATH id N | --host PATH name NAME)"
    )]
    Jited(DumpArgs),
}

/// Which program `prog dump` prints.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// `[FILE] [id N | name NAME]`.
    #[arg(value_name = "SPEC")]
    words: Vec<String>,
    /// The program's name (the same as `name NAME`).
    #[arg(long = "prog", value_name = "NAME")]
    name: Option<String>,
    /// Target BTF for CO-RE and struct_ops (default: /sys/kernel/btf/vmlinux).
    #[arg(long, value_name = "PATH")]
    btf: Option<PathBuf>,
}

/// Runs a `prog` verb.
pub fn run(cmd: ProgCmd, host: Option<&Path>, out: &Output) -> Result<(), CliError> {
    match cmd {
        ProgCmd::Run {
            words,
            name,
            btf,
            data_out,
            input,
        } => {
            let spec = spec(&words, name.as_deref(), &["prog", "run"])?;
            match (host, spec.file, spec.sel) {
                (None, Some(file), Some(Sel::Name(name))) => run_prog(
                    &file,
                    &name,
                    btf.as_deref(),
                    data_out.as_deref(),
                    &input,
                    out,
                ),
                (Some(h), None, Some(sel)) => run_remote(h, &sel, data_out.as_deref(), &input, out),
                _ => Err(CliError::Usage {
                    command: &["prog", "run"],
                    message: "give FILE with --prog NAME, or --host PATH with `id N` or \
                              `name NAME`"
                        .into(),
                }),
            }
        }
        ProgCmd::Show { words, btf } => {
            let spec = spec(&words, None, &["prog", "show"])?;
            let mut conn = Conn::open(host, spec.file.as_deref(), btf.as_deref(), Engine::Jit)?;
            let progs = conn.progs()?;
            let shown: Vec<&ProgEntry> = match &spec.sel {
                Some(sel) => live::select(&progs, sel, "prog", |p| (p.id, &p.name))?,
                None => progs.iter().collect(),
            };
            if out.json {
                out.json(&Value::Array(
                    shown.iter().map(|p| live::prog_json(p)).collect(),
                ))
            } else {
                out.text(&shown.iter().map(|p| live::prog_text(p)).collect::<String>())
            }
        }
        ProgCmd::Dump(form) => {
            let (jited, a) = match form {
                DumpCmd::Xlated(a) => (false, a),
                DumpCmd::Jited(a) => (true, a),
            };
            let verb = if jited { "jited" } else { "xlated" };
            let command: &'static [&'static str] = if jited {
                &["prog", "dump", "jited"]
            } else {
                &["prog", "dump", "xlated"]
            };
            let spec = spec(&a.words, a.name.as_deref(), command)?;
            match (host, spec.file, spec.sel) {
                (None, Some(file), Some(Sel::Name(name))) if jited => {
                    dump_jited(&file, &name, a.btf.as_deref(), out)
                }
                (None, Some(file), Some(Sel::Name(name))) => {
                    dump_xlated_file(&file, &name, a.btf.as_deref(), out)
                }
                (Some(h), None, Some(sel)) => {
                    let mut conn = Conn::remote(h)?;
                    let id = resolve(&mut conn, &sel)?;
                    if jited {
                        let j = conn.jited(id)?;
                        print_jited(&j.name, &live::tag_hex(&j.tag), &j.code, &j.functions, out)
                    } else {
                        print_xlated(&conn.xlated(id)?, out)
                    }
                }
                _ => Err(dump_usage(verb)),
            }
        }
    }
}

fn dump_usage(form: &str) -> CliError {
    CliError::Unsupported {
        what: format!(
            "prog dump {form} needs FILE with --prog NAME (or `name NAME`), or --host PATH \
             with `id N` or `name NAME`"
        ),
    }
}

/// Parses a verb's positional words, reporting a bad one as a usage error.
pub fn spec(
    words: &[String],
    alias: Option<&str>,
    command: &'static [&'static str],
) -> Result<Spec, CliError> {
    Spec::parse(words, alias).map_err(|message| CliError::Usage { command, message })
}

/// The id of the one program `sel` names.
fn resolve(conn: &mut Conn, sel: &Sel) -> Result<u32, CliError> {
    if let Sel::Id(id) = sel {
        return Ok(*id);
    }
    let progs = conn.progs()?;
    Ok(live::select_one(&progs, sel, "prog", |p| (p.id, &p.name))?.id)
}

/// `prog dump xlated FILE`: the relocated instructions of one program.
fn dump_xlated_file(
    file: &Path,
    name: &str,
    btf: Option<&Path>,
    out: &Output,
) -> Result<(), CliError> {
    let path = file.display().to_string();
    let bytes = host::read(file)?;
    let mut obj = open(&path, &bytes)?;
    select(&mut obj, name);
    let target = host::target_btf(btf)?;
    let linked = relocate(&path, &mut obj, &target)?;
    let Some(prog) = linked.iter().find(|l| l.name == name) else {
        return Err(CliError::NoSuchProgram {
            name: name.to_string(),
            path,
            available: linked.iter().map(|l| l.name.clone()).collect(),
        });
    };
    let sym = ObjectSymbols {
        obj: &obj,
        target: &target,
    };
    print_insns(&prog.name, &prog.insns, &sym, out)
}

/// `prog dump xlated` of a host's program: maps by id, kfuncs by the host's names.
fn print_xlated(x: &XlatedProg, out: &Output) -> Result<(), CliError> {
    let insns: Vec<Insn> = x.insns.iter().map(|b| Insn::from_bytes(*b)).collect();
    let sym = HostSymbols { kfuncs: &x.kfuncs };
    print_insns(&x.name, &insns, &sym, out)
}

/// Prints instructions in bpftool's `dump xlated` text, or as JSON.
fn print_insns(
    name: &str,
    insns: &[Insn],
    sym: &dyn Symbolizer,
    out: &Output,
) -> Result<(), CliError> {
    let decoded = decode(insns).map_err(|source| CliError::Decode {
        name: name.to_string(),
        source,
    })?;
    let text = disassemble(&decoded, sym);
    if out.json {
        let raw: Vec<_> = insns
            .iter()
            .map(|i| json!([i.code, i.dst_reg(), i.src_reg(), i.off, i.imm]))
            .collect();
        out.json(&json!({
            "name": name,
            "insn_cnt": insns.len(),
            "insns": raw,
            "xlated": text.lines().map(str::trim_start).collect::<Vec<_>>(),
        }))
    } else {
        out.text(&text)
    }
}

/// Names kfuncs as the host resolved them; maps keep bpftool's `map[id:N]`.
struct HostSymbols<'a> {
    kfuncs: &'a [(u32, String)],
}

impl Symbolizer for HostSymbols<'_> {
    fn kfunc(&self, _pc: usize, btf_id: u32, _btf_fd_idx: i16) -> Option<String> {
        self.kfuncs
            .iter()
            .find(|(id, _)| *id == btf_id)
            .map(|(_, n)| n.clone())
    }
}

/// `prog dump jited FILE`.
fn dump_jited(
    file: &std::path::Path,
    name: &str,
    btf: Option<&std::path::Path>,
    out: &Output,
) -> Result<(), CliError> {
    let loaded = inproc::load(file, btf, Some(&[name]), inproc::Engine::Jit)?;
    let Some(prog) = loaded.obj.prog(name) else {
        return Err(CliError::NoSuchProgram {
            name: name.to_string(),
            path: file.display().to_string(),
            available: loaded.obj.progs().map(|(n, _)| n.to_string()).collect(),
        });
    };
    let Some(jit) = prog.jited() else {
        return Err(CliError::Unsupported {
            what: format!("{name}: the JIT did not compile it (this host has no JIT)"),
        });
    };
    let info = prog.info();
    print_jited(
        name,
        &info.tag_hex(),
        jit.machine_code(),
        &funcs_u32(&jit.functions()),
        out,
    )
}

fn funcs_u32(funcs: &[(u32, usize, usize)]) -> Vec<(u32, u32, u32)> {
    funcs
        .iter()
        .map(|&(e, s, n)| {
            (
                e,
                u32::try_from(s).unwrap_or(u32::MAX),
                u32::try_from(n).unwrap_or(u32::MAX),
            )
        })
        .collect()
}

/// Prints native code, one block per BPF function, as `bpftool prog dump jited` does.
fn print_jited(
    name: &str,
    tag: &str,
    code: &[u8],
    funcs: &[(u32, u32, u32)],
    out: &Output,
) -> Result<(), CliError> {
    let mut listing = Vec::new();
    for &(entry, start, size) in funcs {
        let (start, size) = (start as usize, size as usize);
        let end = start.saturating_add(size).min(code.len());
        let label = if entry == 0 {
            format!("bpf_prog_{tag}_{name}")
        } else {
            format!("bpf_prog_{tag}_F{entry}")
        };
        let bytes = code.get(start..end).unwrap_or_default();
        listing.push((label, entry, start, disasm_x86(bytes, start)));
    }
    if out.json {
        let funcs: Vec<_> = listing
            .iter()
            .map(|(label, entry, start, lines)| {
                json!({
                    "name": label,
                    "insn": entry,
                    "offset": start,
                    "insns": lines
                        .iter()
                        .map(|l| json!({"pc": l.pc, "bytes": hex(&l.bytes), "operation": l.text}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        out.json(&json!({"name": name, "jited_prog_len": code.len(), "functions": funcs}))
    } else {
        let mut text = String::new();
        for (label, _, start, lines) in &listing {
            text.push_str(&format!("{label}:\n"));
            for l in lines {
                text.push_str(&format!("{:4x}:\t{}\n", l.pc - start, l.text));
            }
        }
        out.text(text.trim_end())
    }
}

/// One disassembled native instruction.
struct NativeInsn {
    pc: usize,
    bytes: Vec<u8>,
    text: String,
}

/// Disassembles the x86-64 function `bytes` found at offset `base` of the program's
/// code. Its constants follow its instructions; decoding stops where the first
/// constant an instruction refers to (RIP-relative) begins.
fn disasm_x86(bytes: &[u8], base: usize) -> Vec<NativeInsn> {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut decoder = Decoder::with_ip(64, bytes, base as u64, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    fmt.options_mut().set_hex_prefix("0x");
    fmt.options_mut().set_hex_suffix("");
    fmt.options_mut().set_first_operand_char_index(0);
    fmt.options_mut().set_space_after_operand_separator(true);
    let mut lines = Vec::new();
    let mut data_start = base + bytes.len();
    while decoder.can_decode() && base + decoder.position() < data_start {
        let off = decoder.position();
        let insn = decoder.decode();
        if insn.is_ip_rel_memory_operand() {
            let target = insn.ip_rel_memory_address() as usize;
            if target > base + off && target < data_start {
                data_start = target;
            }
        }
        let mut text = String::new();
        if insn.is_invalid() {
            text.push_str("(bad)");
        } else {
            fmt.format(&insn, &mut text);
        }
        let end = decoder.position();
        lines.push(NativeInsn {
            pc: insn.ip() as usize,
            bytes: bytes.get(off..end).unwrap_or_default().to_vec(),
            text,
        });
    }
    // The constants are aligned with zero bytes, which decode as `add [rax], al`.
    while lines
        .last()
        .is_some_and(|l| l.bytes.iter().all(|&b| b == 0))
    {
        lines.pop();
    }
    lines
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
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
    let loaded = inproc::load(file, btf, Some(&[name]), input.engine)?;
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
    let engine = match prog.engine() {
        structops::Engine::Jit => "jit",
        structops::Engine::Interp => "interp",
    };
    print_run(name, Some(engine), &r, &trace, out)
}

/// `prog run` of a running host's program: the host test-runs it and sends back what
/// `BPF_PROG_TEST_RUN` returns (what the program printed stays in the host).
fn run_remote(
    host: &Path,
    sel: &Sel,
    data_out: Option<&Path>,
    input: &inproc::RunInput,
    out: &Output,
) -> Result<(), CliError> {
    let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, CliError> {
        p.as_deref().map(host::read).transpose()
    };
    let data_in = read(&input.data_in)?;
    let ctx_in = read(&input.ctx_in)?;
    let mut conn = Conn::remote(host)?;
    let progs = conn.progs()?;
    let p = live::select_one(&progs, sel, "prog", |p| (p.id, &p.name))?;
    let (id, name) = (p.id, p.name.clone());
    let ran = conn.prog_run(id, input.args.clone(), data_in, ctx_in, input.repeat)?;
    let r = inproc::RunResult {
        retval: ran.retval,
        duration: ran.duration_ns,
        repeat: input.repeat.max(1),
        data_out: ran.data_out,
        ctx_out: ran.ctx_out,
    };
    if let (Some(path), Some(data)) = (data_out, &r.data_out) {
        std::fs::write(path, data).map_err(|source| CliError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    }
    print_run(&name, None, &r, &[], out)
}

/// Prints a test run's results (`engine`: the engine it ran on, when known).
fn print_run(
    name: &str,
    engine: Option<&str>,
    r: &inproc::RunResult,
    trace: &[String],
    out: &Output,
) -> Result<(), CliError> {
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if out.json {
        return out.json(&json!({
            "name": name,
            "engine": engine,
            "retval": r.retval,
            "duration_ns": r.duration,
            "repeat": r.repeat,
            "data_size_out": r.data_out.as_ref().map(Vec::len),
            "data_out": r.data_out.as_deref().map(hex),
            "ctx_out": r.ctx_out.as_deref().map(hex),
            "trace": trace,
        }));
    }
    let engine = engine.map(|e| format!(", {e}")).unwrap_or_default();
    let mut s = format!(
        "retval: {} ({:#x})\nduration: {} ns/run ({} run{}{engine})\n",
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
        for line in trace {
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
