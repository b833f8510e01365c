//! Differential test against the running kernel's verifier: the same
//! programs loaded as XDP with `BPF_PROG_LOAD` (log level 1) and verified
//! here with an XDP-like environment must get the same verdict, and on
//! rejection the same errno and the same error line (the log line before
//! `processed ...`). Skips with a message when bpf(2) is unavailable.

use structops_isa::assemble;

use crate::env::{LogOptions, Privileges, ProgInfo};
use crate::tests::Mock;
use crate::verify;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// A descriptor closed on drop.
pub(crate) struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn map_create(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> Result<Fd, i32> {
    let attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: 0,
    };
    // SAFETY: `attr` is a live, correctly sized `union bpf_attr` prefix.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreateAttr,
            std::mem::size_of::<MapCreateAttr>(),
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    Ok(Fd(fd as libc::c_int))
}

/// Loads as XDP at log level 1: the fd or errno, and the log.
fn kernel_load(insns: &[structops_isa::Insn]) -> (Result<Fd, i32>, String) {
    kernel_load_level(insns, 1)
}

/// Loads as XDP at `log_level`: the fd or errno, and the log.
pub(crate) fn kernel_load_level(
    insns: &[structops_isa::Insn],
    log_level: u32,
) -> (Result<Fd, i32>, String) {
    let license = c"GPL";
    let mut log = vec![0u8; 1 << 20];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    // SAFETY: every pointer in `attr` refers to a live buffer of its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).into_owned();
    if fd < 0 {
        return (Err(errno()), text);
    }
    (Ok(Fd(fd as libc::c_int)), text)
}

/// The kernel's error line: the line before `processed ...`, except that
/// after "infinite loop detected" the kernel prints two state dumps.
fn error_line(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let pos = lines
        .iter()
        .rposition(|l| l.starts_with("processed "))
        .unwrap_or(lines.len());
    let before = &lines[..pos];
    if let Some(l) = before
        .iter()
        .rev()
        .take(3)
        .find(|l| l.starts_with("infinite loop detected"))
    {
        return (*l).to_owned();
    }
    before.last().map_or(String::new(), |s| (*s).to_owned())
}

const LOOKUP: &str = "r1 = map[id:{H}]\nr2 = r10\nr2 += -4\nr3 = 0\n*(u32 *)(r10 -4) = r3\ncall bpf_map_lookup_elem#1\n";
const PKT: &str = "r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\nr4 = r2\nr4 += 14\n";
const RB: &str = "r1 = map[id:{R}]\nr2 = 8\nr3 = 0\ncall bpf_ringbuf_reserve#131\n";

fn corpus() -> Vec<(&'static str, String)> {
    let s = |x: &str| x.to_owned();
    vec![
        ("minimal", s("r0 = 0\nexit")),
        ("no r0", s("exit")),
        ("uninit reg", s("r0 = r2\nexit")),
        ("write fp", s("r10 = 0\nr0 = 0\nexit")),
        ("unreachable", s("r0 = 0\nexit\nr0 = 1\nexit")),
        ("jump out", s("r0 = 0\ngoto pc+5\nexit")),
        ("no exit", s("r0 = 0")),
        (
            "bounded loop",
            s("r0 = 0\nl:\nr0 += 1\nif r0 < 5 goto l\nexit"),
        ),
        ("infinite loop", s("r0 = 0\nl:\nr1 = 0\ngoto l\n")),
        ("div by zero", s("r0 = 1\nr0 /= 0\nexit")),
        ("bad shift", s("r0 = 1\nr0 <<= 64\nexit")),
        ("scalar deref", s("r1 = 0\nr0 = *(u32 *)(r1 +0)\nexit")),
        ("ptr32", s("r1 = r10\nw1 += 1\nr0 = 0\nexit")),
        ("ptr mul", s("r1 = r10\nr1 *= 2\nr0 = 0\nexit")),
        ("ptr and", s("r1 = r10\nr1 &= 2\nr0 = 0\nexit")),
        ("ptr+ptr", s("r1 = r10\nr2 = r10\nr1 += r2\nr0 = 0\nexit")),
        ("scalar-ptr", s("r1 = r10\nr2 = 1\nr2 -= r1\nr0 = 0\nexit")),
        ("fp-scalar", s("r1 = r10\nr2 = 1\nr1 -= r2\nr0 = 0\nexit")),
        ("ptr-ptr", s("r1 = r10\nr2 = r10\nr1 -= r2\nr0 = r1\nexit")),
        ("ctx read", s("r0 = *(u32 *)(r1 +12)\nexit")),
        ("ctx oob", s("r0 = *(u32 *)(r1 +64)\nexit")),
        ("ctx write", s("r0 = 0\n*(u32 *)(r1 +12) = r0\nexit")),
        ("ctx modified", s("r1 += 4\nr0 = *(u32 *)(r1 +0)\nexit")),
        (
            "spill fill ptr",
            s("*(u64 *)(r10 -8) = r1\nr2 = *(u64 *)(r10 -8)\nr0 = *(u32 *)(r2 +12)\nexit"),
        ),
        ("stack +0", s("r0 = 0\n*(u64 *)(r10 +0) = r0\nexit")),
        ("stack -520", s("r0 = 0\n*(u64 *)(r10 -520) = r0\nexit")),
        ("stack misaligned", s("r0 = 0\n*(u32 *)(r10 -6) = r0\nexit")),
        ("uninit stack root", s("r0 = *(u64 *)(r10 -8)\nexit")),
        (
            "partial fill",
            s("*(u64 *)(r10 -8) = r1\nr0 = *(u32 *)(r10 -8)\nexit"),
        ),
        ("narrow spill ptr", s("*(u32 *)(r10 -8) = r1\nr0 = 0\nexit")),
        (
            "var stack read",
            s(
                "r0 = 0\n*(u64 *)(r10 -8) = r0\n*(u64 *)(r10 -16) = r0\ncall bpf_get_prandom_u32#7\nr0 &= 8\nr1 = r10\nr1 += -16\nr1 += r0\nr0 = *(u64 *)(r1 +0)\nexit",
            ),
        ),
        (
            "spilled bounds",
            s(
                "call bpf_get_prandom_u32#7\nr0 &= 7\n*(u64 *)(r10 -8) = r0\nr1 = *(u64 *)(r10 -8)\nr2 = r10\nr2 += -16\nr2 += r1\nr0 = *(u8 *)(r2 +0)\nexit",
            ),
        ),
        (
            "lookup no null check",
            format!("{LOOKUP}r0 = *(u64 *)(r0 +0)\nexit"),
        ),
        (
            "lookup null check",
            format!("{LOOKUP}if r0 == 0x0 goto out\nr0 = *(u64 *)(r0 +0)\nout:\nr0 = 0\nexit"),
        ),
        (
            "map value oob",
            format!("{LOOKUP}if r0 == 0x0 goto out\nr0 = *(u32 *)(r0 +8)\nout:\nr0 = 0\nexit"),
        ),
        (
            "map value var ok",
            format!(
                "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall bpf_get_prandom_u32#7\nr0 &= 7\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "map value var max",
            format!(
                "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall bpf_get_prandom_u32#7\nr0 &= 15\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "map value unbounded",
            format!(
                "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall bpf_get_prandom_u32#7\nr0 >>= 1\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "map value smin",
            format!(
                "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall bpf_get_prandom_u32#7\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "map value branch bound",
            format!(
                "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall bpf_get_prandom_u32#7\nif r0 > 7 goto out\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "linked scalars",
            format!(
                "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall bpf_get_prandom_u32#7\nr1 = r0\nr2 = r1\nif r1 > 7 goto out\nr6 += r2\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "null check copy",
            format!(
                "{LOOKUP}r6 = r0\nif r0 == 0x0 goto out\nr0 = *(u64 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "key scalar",
            s("r1 = map[id:{H}]\nr2 = 0\ncall bpf_map_lookup_elem#1\nr0 = 0\nexit"),
        ),
        (
            "map scalar",
            s("r1 = 0\nr2 = r10\ncall bpf_map_lookup_elem#1\nr0 = 0\nexit"),
        ),
        (
            "clobbered r1",
            s("call bpf_get_prandom_u32#7\nr0 = r1\nexit"),
        ),
        (
            "probe read negative",
            s("r1 = r10\nr1 += -8\nr2 = -1\nr3 = 0\ncall bpf_probe_read_kernel#113\nr0 = 0\nexit"),
        ),
        (
            "probe read fills",
            s(
                "r1 = r10\nr1 += -8\nr2 = 8\nr3 = 0\ncall bpf_probe_read_kernel#113\nr0 = *(u64 *)(r10 -8)\nexit",
            ),
        ),
        (
            "probe read unbounded",
            s(
                "call bpf_get_prandom_u32#7\nr0 >>= 1\nr1 = r10\nr1 += -8\nr2 = r0\nr3 = 0\ncall bpf_probe_read_kernel#113\nr0 = 0\nexit",
            ),
        ),
        ("ringbuf leak", format!("{RB}r0 = 0\nexit")),
        (
            "ringbuf leak nonnull",
            format!("{RB}if r0 == 0x0 goto out\nr0 = 0\nout:\nexit"),
        ),
        (
            "ringbuf ok",
            format!(
                "{RB}if r0 == 0x0 goto out\nr1 = r0\nr2 = 0\ncall bpf_ringbuf_submit#132\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "ringbuf submit null",
            format!("{RB}r1 = r0\nr2 = 0\ncall bpf_ringbuf_submit#132\nr0 = 0\nexit"),
        ),
        (
            "ringbuf use after free",
            format!(
                "{RB}if r0 == 0x0 goto out\nr6 = r0\nr1 = r0\nr2 = 0\ncall bpf_ringbuf_submit#132\nr0 = *(u64 *)(r6 +0)\nout:\nr0 = 0\nexit"
            ),
        ),
        (
            "ringbuf oob",
            format!(
                "{RB}if r0 == 0x0 goto out\nr1 = *(u64 *)(r0 +8)\nr1 = r0\nr2 = 0\ncall bpf_ringbuf_submit#132\nout:\nr0 = 0\nexit"
            ),
        ),
        ("pkt unchecked", format!("{PKT}r0 = *(u8 *)(r2 +0)\nexit")),
        (
            "pkt checked",
            format!("{PKT}if r4 > r3 goto out\nr0 = *(u8 *)(r2 +13)\nexit\nout:\nr0 = 0\nexit"),
        ),
        (
            "pkt past check",
            format!("{PKT}if r4 > r3 goto out\nr0 = *(u8 *)(r2 +14)\nexit\nout:\nr0 = 0\nexit"),
        ),
        (
            "pkt ge",
            format!("{PKT}if r3 >= r4 goto ok\nr0 = 0\nexit\nok:\nr0 = *(u16 *)(r2 +12)\nexit"),
        ),
        (
            "pkt write",
            format!("{PKT}if r4 > r3 goto out\nr0 = 1\n*(u8 *)(r2 +3) = r0\nout:\nr0 = 0\nexit"),
        ),
        (
            "pkt_end arith",
            s("r3 = *(u32 *)(r1 +4)\nr3 += 1\nr0 = 0\nexit"),
        ),
        (
            "subprog",
            s("r1 = 1\ncall f\nexit\nf:\nr0 = r1\nr0 += 1\nexit"),
        ),
        (
            "subprog clobber",
            s("r1 = 1\ncall f\nr0 = r1\nexit\nf:\nr0 = 0\nexit"),
        ),
        ("subprog returns fp", s("call f\nexit\nf:\nr0 = r10\nexit")),
        ("recursion", s("call f\nexit\nf:\ncall f\nexit")),
        (
            "combined stack",
            s(
                "r0 = 0\n*(u64 *)(r10 -512) = r0\ncall f\nexit\nf:\nr0 = 0\n*(u64 *)(r10 -8) = r0\nexit",
            ),
        ),
        (
            "caller stack",
            s(
                "r1 = r10\nr1 += -8\ncall f\nr0 = *(u64 *)(r10 -8)\nexit\nf:\nr0 = 5\n*(u64 *)(r1 +0) = r0\nexit",
            ),
        ),
        (
            "dead branch",
            s("r0 = 5\nif r0 > 7 goto bad\nexit\nbad:\nr0 = *(u64 *)(r0 +0)\nexit"),
        ),
        ("return pointer", s("r0 = r10\nexit")),
        (
            "helper not for xdp",
            s("call bpf_skb_load_bytes#26\nr0 = 0\nexit"),
        ),
    ]
}

#[test]
fn verdicts_and_messages_match_the_kernel() {
    let hash = match map_create(1, 4, 8, 16) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("skipping kernel differential: BPF_MAP_CREATE failed with errno {e}");
            return;
        }
    };
    let (Ok(array), Ok(ringbuf)) = (map_create(2, 4, 16, 16), map_create(27, 0, 0, 4096)) else {
        eprintln!("skipping kernel differential: cannot create maps");
        return;
    };
    let env = Mock {
        fds: [hash.0, array.0, ringbuf.0],
        ..Mock::default()
    };
    let info = ProgInfo {
        gpl_compatible: true,
        privileges: Privileges::ROOT,
        ..ProgInfo::default()
    };
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for (name, src) in corpus() {
        let src = src
            .replace("{H}", &hash.0.to_string())
            .replace("{A}", &array.0.to_string())
            .replace("{R}", &ringbuf.0.to_string());
        let insns = assemble(&src).unwrap().encode();
        let (kres, klog) = kernel_load(&insns);
        let ours = verify(
            &insns,
            &info,
            &env,
            &LogOptions {
                level: 1,
                stats: false,
            },
        );
        compared += 1;
        let theirs = kres
            .as_ref()
            .map(|_| ())
            .map_err(|&e| (e, error_line(&klog)));
        let mine = ours
            .as_ref()
            .map(|_| ())
            .map_err(|e| (e.errno, e.message.lines().last().unwrap_or("").to_owned()));
        // The kernel reports ENOTSUPP as 524 to user space as well.
        if theirs != mine {
            mismatches.push(format!("{name}: kernel {theirs:?} ours {mine:?}"));
        }
    }
    assert!(compared > 60);
    assert!(
        mismatches.is_empty(),
        "{} of {compared} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Prints the kernel's log (level from `STRUCTOPS_KLOG_LEVEL`, default 2)
/// and ours for the program in the file `STRUCTOPS_KLOG_ASM`; a developer
/// probe, run with `--ignored --nocapture`.
#[test]
#[ignore = "developer probe: needs STRUCTOPS_KLOG_ASM"]
fn print_kernel_log() {
    let Ok(path) = std::env::var("STRUCTOPS_KLOG_ASM") else {
        eprintln!("set STRUCTOPS_KLOG_ASM");
        return;
    };
    let level: u32 = std::env::var("STRUCTOPS_KLOG_LEVEL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let src = std::fs::read_to_string(path).unwrap();
    let insns = assemble(&src).unwrap().encode();
    let (res, log) = kernel_load_level(&insns, level);
    println!("=== kernel: {:?}\n{log}", res.as_ref().map(|_| ()));
    let env = Mock::default();
    let info = ProgInfo {
        gpl_compatible: true,
        privileges: Privileges::ROOT,
        ..ProgInfo::default()
    };
    let opts = LogOptions {
        level,
        stats: false,
    };
    match verify(&insns, &info, &env, &opts) {
        Ok(p) => println!("=== ours: accepted\n{}", p.log()),
        Err(e) => println!("=== ours: {} {}\n{}", e.errno, e.message, e.log),
    }
}

/// `processed N insns` of a kernel log.
fn processed(log: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.starts_with("processed "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Loops the kernel explores by states (bounded loops, `may_goto`) for
/// the processed-instruction comparison.
fn loop_corpus() -> Vec<(&'static str, String)> {
    let s = |x: &str| x.to_owned();
    vec![
        (
            "loop 10",
            s("r0 = 0\nr1 = 0\nl:\nr0 += 1\nr1 += 1\nif r1 < 10 goto l\nexit"),
        ),
        (
            "loop 1000 with dead counter",
            s("r0 = 0\nr1 = 0\nr2 = 0\nl:\nr2 += 3\nr1 += 1\nif r1 < 1000 goto l\nexit"),
        ),
        (
            "nested loops",
            s(
                "r0 = 0\nr1 = 0\nouter:\nr2 = 0\ninner:\nr0 += 1\nr2 += 1\nif r2 < 4 goto inner\nr1 += 1\nif r1 < 4 goto outer\nexit",
            ),
        ),
        (
            "loop with branch",
            s(
                "r0 = 0\nr6 = *(u32 *)(r1 +0)\nr1 = 0\nl:\nif r6 > 5 goto skip\nr0 += 1\nskip:\nr1 += 1\nif r1 < 20 goto l\nexit",
            ),
        ),
        (
            "may_goto",
            s("r0 = 0\nl:\nmay_goto pc+2\nr0 += 1\ngoto l\nexit"),
        ),
        (
            "may_goto nested",
            s(
                "r0 = 0\nouter:\nmay_goto pc+5\nr1 = 0\ninner:\nmay_goto pc+2\nr1 += 1\ngoto inner\ngoto outer\nexit",
            ),
        ),
        (
            "branchy imprecise",
            s(
                "call bpf_get_prandom_u32#7\nr6 = r0\ncall bpf_get_prandom_u32#7\nr7 = r0\nr8 = 0\nif r6 > 10 goto a\nr8 = 1\na:\nif r7 > 10 goto b\nr8 += 2\nb:\nif r6 > 20 goto c\nr8 += 4\nc:\nif r7 > 20 goto d\nr8 += 8\nd:\nr0 = 0\nexit",
            ),
        ),
        (
            "spilled counters",
            s(
                "r1 = 0\n*(u64 *)(r10 -8) = r1\n*(u64 *)(r10 -16) = r1\nl:\nr1 = *(u64 *)(r10 -8)\nr1 += 1\n*(u64 *)(r10 -8) = r1\nr2 = *(u64 *)(r10 -16)\nr2 += 2\n*(u64 *)(r10 -16) = r2\nif r1 < 50 goto l\nr0 = 0\nexit",
            ),
        ),
        (
            "stack index precise",
            s(
                "r1 = 0\n*(u64 *)(r10 -8) = r1\n*(u64 *)(r10 -16) = r1\nl:\nr2 = r10\nr2 += -16\nr3 = r1\nr3 &= 8\nr2 += r3\nr0 = *(u64 *)(r2 +0)\nr1 += 1\nif r1 < 30 goto l\nr0 = 0\nexit",
            ),
        ),
    ]
}

#[test]
fn processed_insns_not_above_the_kernel() {
    let hash = match map_create(1, 4, 8, 16) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("skipping processed-insn comparison: BPF_MAP_CREATE failed with errno {e}");
            return;
        }
    };
    let (Ok(array), Ok(ringbuf)) = (map_create(2, 4, 16, 16), map_create(27, 0, 0, 4096)) else {
        eprintln!("skipping processed-insn comparison: cannot create maps");
        return;
    };
    let env = Mock {
        fds: [hash.0, array.0, ringbuf.0],
        ..Mock::default()
    };
    let info = ProgInfo {
        gpl_compatible: true,
        privileges: Privileges::ROOT,
        ..ProgInfo::default()
    };
    let mut above = Vec::new();
    let mut rows = Vec::new();
    let (mut sum_k, mut sum_o) = (0u64, 0u64);
    for (name, src) in corpus().into_iter().chain(loop_corpus()) {
        let src = src
            .replace("{H}", &hash.0.to_string())
            .replace("{A}", &array.0.to_string())
            .replace("{R}", &ringbuf.0.to_string());
        let insns = assemble(&src).unwrap().encode();
        let (kres, klog) = kernel_load(&insns);
        let Ok(_fd) = kres else {
            continue;
        };
        let Some(k) = processed(&klog) else {
            continue;
        };
        let ours = verify(&insns, &info, &env, &LogOptions::default());
        let Ok(p) = ours else {
            above.push(format!("{name}: kernel accepts, we reject: {ours:?}"));
            continue;
        };
        let o = p.stats().insn_processed;
        sum_k += k;
        sum_o += o;
        rows.push(format!("{name:32} kernel {k:6} ours {o:6}"));
        if o > k {
            above.push(format!("{name}: kernel {k} ours {o}"));
        }
    }
    println!("{}\ntotal: kernel {sum_k} ours {sum_o}", rows.join("\n"));
    assert!(rows.len() > 25, "only {} programs compared", rows.len());
    assert!(
        above.is_empty(),
        "processed more than the kernel:\n{}",
        above.join("\n")
    );
}
