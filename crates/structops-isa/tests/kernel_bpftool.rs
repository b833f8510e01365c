//! Compares our disassembly with `bpftool prog dump xlated`.
//!
//! `tests/bpf/xlated.bpf.c` is compiled with clang, loaded into the running
//! kernel with `bpftool prog loadall` into a private bpffs mount, and for
//! every program the raw xlated instructions (`dump xlated ... file`) are
//! decoded and disassembled by us and compared line by line with bpftool's
//! text. Comparing the same xlated bytes means the kernel's rewrites (map
//! pointers, inlined lookups, helper addresses) are on both sides; helper
//! names are resolved through `/proc/kallsyms` exactly as bpftool does.
//!
//! Needs root, bpftool and clang (clang-19 or clang); skips with a printed
//! reason otherwise. The mount and the pins are removed even on failure.

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use structops_isa::disasm::Symbolizer;
use structops_isa::{Insn, Program, decode, disassemble, helper_name};

/// A private temporary directory with a bpffs mounted at `fs`; unpinned,
/// unmounted and removed on drop.
struct Workspace {
    dir: PathBuf,
    fs: PathBuf,
    mounted: bool,
}

impl Workspace {
    fn new() -> std::io::Result<Workspace> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "structops-isa-bpftool-{}-{nanos}",
            std::process::id()
        ));
        let fs = dir.join("fs");
        std::fs::create_dir_all(&fs)?;
        Ok(Workspace {
            dir,
            fs,
            mounted: false,
        })
    }

    fn mount(&mut self) -> Result<(), String> {
        // Set before running: a failed mount leaves nothing to undo, a
        // half-done one is undone by `drop`.
        self.mounted = true;
        run(Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&self.fs))?;
        Ok(())
    }
}

impl Workspace {
    /// Mount points at or below `dir`, most recent first.
    fn mounts_below(&self) -> Vec<String> {
        let prefix = self.dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut found: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        found.reverse();
        found
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.mounted {
            // Unmounting the bpffs drops the pins' references, so the kernel
            // frees the programs. Unmount everything below our directory,
            // newest first, in case a tool mounted something there too.
            for _ in 0..8 {
                let mounts = self.mounts_below();
                if mounts.is_empty() {
                    break;
                }
                for m in mounts {
                    let _ = Command::new("umount").arg(&m).status();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command; its stdout, or an error naming it with its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn works(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// bpftool's helper naming: the built-in table first (as the kernel's
/// `__func_get_name()` does), then the kallsyms symbol at
/// `__bpf_call_base + imm`, then that address in hex.
struct Kallsyms {
    call_base: u64,
    /// Every name at each address; the first one is the one we print.
    by_addr: HashMap<u64, Vec<String>>,
}

impl Kallsyms {
    fn load() -> Option<Kallsyms> {
        let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
        let mut by_addr = HashMap::new();
        let mut call_base = None;
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(addr), Some(_), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if name == "__bpf_call_base" {
                call_base = Some(addr);
            }
            if addr != 0 {
                by_addr
                    .entry(addr)
                    .or_insert_with(Vec::new)
                    .push(name.to_owned());
            }
        }
        call_base
            .filter(|&b| b != 0)
            .map(|call_base| Kallsyms { call_base, by_addr })
    }
}

impl Symbolizer for Kallsyms {
    fn helper(&self, _pc: usize, id: i32) -> Option<String> {
        if let Some(name) = helper_name(id) {
            return Some(name.to_owned());
        }
        let addr = self.helper_addr(id);
        Some(
            self.by_addr
                .get(&addr)
                .and_then(|names| names.first())
                .cloned()
                .unwrap_or_else(|| format!("{addr:#x}")),
        )
    }
}

impl Kallsyms {
    fn helper_addr(&self, id: i32) -> u64 {
        self.call_base.wrapping_add(i64::from(id) as u64)
    }

    /// Whether two helper-call lines differ only in which of several
    /// symbols at the same address was picked (bpftool's bsearch over a
    /// sort with duplicates may pick any of them).
    fn same_call(&self, theirs: &str, ours: &str) -> bool {
        let split = |l: &str| -> Option<(String, String, i32)> {
            let (head, rest) = l.split_once(" call ")?;
            let (name, id) = rest.rsplit_once('#')?;
            Some((head.to_owned(), name.to_owned(), id.parse().ok()?))
        };
        match (split(theirs), split(ours)) {
            (Some((h1, n1, i1)), Some((h2, _, i2))) if h1 == h2 && i1 == i2 => self
                .by_addr
                .get(&self.helper_addr(i1))
                .is_some_and(|names| names.contains(&n1)),
            _ => false,
        }
    }
}

/// The `N: (xx) ...` lines of a bpftool listing (dropping source-line and
/// function-signature annotations).
fn insn_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            let digits = t.bytes().take_while(u8::is_ascii_digit).count();
            digits > 0 && t.get(digits..).is_some_and(|r| r.starts_with(": ("))
        })
        .collect()
}

fn compare(name: &str, pin: &Path, raw_path: &Path, syms: &Kallsyms) -> Result<usize, String> {
    let text = run(Command::new("bpftool")
        .args(["prog", "dump", "xlated", "pinned"])
        .arg(pin))?;
    run(Command::new("bpftool")
        .args(["prog", "dump", "xlated", "pinned"])
        .arg(pin)
        .arg("file")
        .arg(raw_path))?;
    let bytes = std::fs::read(raw_path).map_err(|e| e.to_string())?;
    let mut insns = Insn::parse_slice(&bytes).map_err(|e| e.to_string())?;
    // The verifier's own zero-extension marker (`BPF_ZEXT_REG`: a 32-bit register move
    // with `imm` 1, which it inserts after 32-bit cmpxchg whatever the JIT) is not a
    // valid program instruction; bpftool prints it as the plain move it executes as.
    for i in &mut insns {
        if i.code == 0xbc && i.imm == 1 && i.off == 0 && i.dst_reg() == i.src_reg() {
            i.imm = 0;
        }
    }
    let prog: Program = decode(&insns).map_err(|e| format!("{name}: {e}"))?;
    let ours = disassemble(&prog, syms);
    let theirs = insn_lines(&text);
    let ours: Vec<&str> = ours.lines().collect();
    let mut diffs = Vec::new();
    for i in 0..theirs.len().max(ours.len()) {
        let (t, o) = (theirs.get(i), ours.get(i));
        let alias = matches!((t, o), (Some(t), Some(o)) if syms.same_call(t, o));
        if t != o && !alias {
            diffs.push(format!("bpftool: {t:?}\n   ours: {o:?}"));
        }
    }
    if diffs.is_empty() {
        Ok(theirs.len())
    } else {
        Err(format!(
            "{name}: {} lines differ:\n{}\n\nbpftool output:\n{text}",
            diffs.len(),
            diffs.join("\n")
        ))
    }
}

#[test]
fn disassembly_matches_bpftool_xlated() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let clang = ["clang-19", "clang"]
        .into_iter()
        .find(|c| works(c, "--version"));
    let skip = if !root {
        Some("not running as root".to_owned())
    } else if !works("bpftool", "version") {
        Some("bpftool is not installed".to_owned())
    } else if clang.is_none() {
        Some("neither clang-19 nor clang is installed".to_owned())
    } else {
        None
    };
    if let Some(reason) = skip {
        println!("SKIPPED disassembly_matches_bpftool_xlated: {reason}");
        return;
    }
    let Some(syms) = Kallsyms::load() else {
        println!("SKIPPED disassembly_matches_bpftool_xlated: /proc/kallsyms hides addresses");
        return;
    };
    let mut ws = Workspace::new().expect("temporary directory");
    if let Err(e) = ws.mount() {
        println!("SKIPPED disassembly_matches_bpftool_xlated: cannot mount bpffs: {e}");
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bpf/xlated.bpf.c");
    let obj = ws.dir.join("xlated.bpf.o");
    run(Command::new(clang.unwrap_or("clang"))
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj))
    .unwrap_or_else(|e| panic!("compiling {}: {e}", src.display()));
    // Pin into a directory *inside* the bpffs: bpftool mounts a bpffs of
    // its own on the parent of the pin path when that is not one already.
    let pins = ws.fs.join("progs");
    run(Command::new("bpftool")
        .args(["prog", "loadall"])
        .arg(&obj)
        .arg(&pins))
    .unwrap_or_else(|e| panic!("loading: {e}"));
    for name in ["c_prog", "asm_prog"] {
        let pin = pins.join(name);
        let raw = ws.dir.join(format!("{name}.xlated"));
        match compare(name, &pin, &raw, &syms) {
            Ok(n) => println!("{name}: {n} lines match bpftool"),
            Err(e) => panic!("{e}"),
        }
    }
}
