//! Compares our disassembly with the running kernel's own `print_bpf_insn()`.
//!
//! Each program below is assembled by us, loaded with `bpf(BPF_PROG_LOAD)`
//! at log level 2, and every `N: (xx) ...` line of the verifier log must
//! equal our text for the op at slot `N`. This covers the cpu v4 forms
//! (sdiv, movsx, bswap, sign-extending loads, gotol, may_goto) and
//! load-acquire / store-release, which the installed bpftool is too old to
//! print. Needs root and a kernel with BPF; skips and says why otherwise.

#![cfg(target_os = "linux")]

use std::collections::BTreeSet;

use structops_isa::disasm::Bpftool;
use structops_isa::{Program, assemble, format_op};

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `prog_name`.
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

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// Loads `prog` as a socket filter; returns the verifier log and the errno
/// of a failed load.
fn load_with_log(prog: &Program) -> (String, Option<i32>) {
    let insns = prog.encode();
    let license = c"GPL";
    let mut log = vec![0u8; 16 << 20];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: u32::try_from(insns.len()).expect("small program"),
        // `Insn` has the layout of `struct bpf_insn` (see the layout test).
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 2,
        log_size: u32::try_from(log.len()).expect("16 MiB"),
        log_buf: log.as_mut_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    // SAFETY: every pointer in `attr` refers to a live buffer of the stated
    // size for the duration of the call; the kernel only reads `insns` and
    // `license` and writes at most `log_size` bytes to `log_buf`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    let errno = if fd < 0 {
        Some(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        // SAFETY: `fd` is a file descriptor the kernel just returned to us.
        unsafe { libc::close(fd as libc::c_int) };
        None
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    (String::from_utf8_lossy(&log[..end]).into_owned(), errno)
}

/// Why this machine cannot run the comparison, if it cannot.
fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    let probe = assemble("r0 = 0\nexit").expect("probe assembles");
    match load_with_log(&probe) {
        (_, None) => None,
        (_, Some(e)) => Some(format!(
            "bpf(BPF_PROG_LOAD) fails for a trivial program: {}",
            std::io::Error::from_raw_os_error(e)
        )),
    }
}

/// Splits a verifier-log line `N: (xx) text   ; state` into `(N, "(xx) text")`.
fn insn_line(line: &str) -> Option<(usize, &str)> {
    let (pc, rest) = line.split_once(": ")?;
    let pc = pc.parse().ok()?;
    if !rest.starts_with('(') || rest.get(3..4) != Some(")") {
        return None;
    }
    let text = rest.split(';').next().unwrap_or(rest).trim_end();
    Some((pc, text))
}

/// Loads `src`, then checks every instruction line of the log.
fn check(name: &str, src: &str) {
    let prog = assemble(src).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (log, errno) = load_with_log(&prog);
    assert_eq!(
        errno, None,
        "{name}: the kernel rejected the program:\n{log}"
    );
    let mut seen = BTreeSet::new();
    let mut mismatches = Vec::new();
    for line in log.lines() {
        let Some((pc, kernel)) = insn_line(line) else {
            continue;
        };
        let ours = prog.op_at(pc).map(|op| format_op(&op, pc, &Bpftool));
        if ours.as_deref() != Some(kernel) {
            mismatches.push(format!("{pc}: kernel `{kernel}`, ours `{ours:?}`"));
        }
        seen.insert(pc);
    }
    assert!(
        mismatches.is_empty(),
        "{name}: disassembly differs from the kernel's:\n{}\n\nlog:\n{log}",
        mismatches.join("\n")
    );
    let missing: Vec<usize> = prog
        .iter()
        .map(|(pc, _)| pc)
        .filter(|pc| !seen.contains(pc))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: no log line for slots {missing:?}:\n{log}"
    );
    println!("{name}: {} instruction lines match the kernel", seen.len());
}

/// Scalars in r1..r9 (r6 keeps the context for LD_ABS).
const PROLOGUE: &str = "
    r6 = r1
    call bpf_get_prandom_u32#7
    r7 = r0
    call bpf_ktime_get_ns#5
    r8 = r0
    r9 = r7
    r1 = r7
    r2 = r8
    r3 = r9
    w4 = w7
    r5 = 0x123456789abcdef
";

fn alu_program() -> String {
    let mut s = String::from(PROLOGUE);
    for (p, k) in [("r", "-7"), ("w", "-7")] {
        for op in [
            "+=", "-=", "*=", "/=", "s/=", "%=", "s%=", "|=", "&=", "^=", "=",
        ] {
            s += &format!("{p}1 {op} {k}\n{p}2 {op} {p}3\n");
        }
        for op in ["<<=", ">>=", "s>>="] {
            s += &format!("{p}1 {op} 3\n{p}2 {op} {p}3\n");
        }
        s += &format!("{p}4 = -{p}4\n{p}5 = (s8){p}6\n{p}5 = (s16){p}7\n");
    }
    s += "r5 = (s32)r8\n";
    for bits in [16, 32, 64] {
        s += &format!("r7 = le{bits} r7\nr7 = be{bits} r7\nr8 = bswap{bits} r8\n");
    }
    s += "r0 = 0\nexit\n";
    s
}

fn jmp_program() -> String {
    let mut s = String::from(PROLOGUE);
    for p in ["r", "w"] {
        for c in [
            "==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<=", "&",
        ] {
            s += &format!("if {p}1 {c} 0xfffffffe goto pc+1\nr0 = 1\n");
            s += &format!("if {p}2 {c} {p}9 goto pc+1\nr0 = 2\n");
        }
    }
    s += "
        goto pc+0
        gotol pc+0
        may_goto pc+1
        r0 = 5
        r0 = 0
        exit
    ";
    s
}

const MEM_PROGRAM: &str = "
    r1 = 1
    r2 = 2
    *(u64 *)(r10 -8) = 0
    *(u32 *)(r10 -16) = -1
    *(u16 *)(r10 -20) = 7
    *(u8 *)(r10 -22) = 9
    *(u64 *)(r10 -32) = r1
    *(u32 *)(r10 -36) = r2
    *(u16 *)(r10 -38) = r1
    *(u8 *)(r10 -39) = r2
    r3 = *(u64 *)(r10 -8)
    r3 = *(u32 *)(r10 -16)
    r3 = *(u16 *)(r10 -20)
    r3 = *(u8 *)(r10 -22)
    r4 = *(s32 *)(r10 -16)
    r4 = *(s16 *)(r10 -20)
    r4 = *(s8 *)(r10 -22)
    lock *(u64 *)(r10 -8) += r1
    lock *(u64 *)(r10 -8) &= r1
    lock *(u64 *)(r10 -8) |= r1
    lock *(u64 *)(r10 -8) ^= r1
    lock *(u32 *)(r10 -16) += r2
    lock *(u32 *)(r10 -16) &= r2
    lock *(u32 *)(r10 -16) |= r2
    lock *(u32 *)(r10 -16) ^= r2
    r1 = atomic64_fetch_add((u64 *)(r10 -8), r1)
    r1 = atomic64_fetch_and((u64 *)(r10 -8), r1)
    r1 = atomic64_fetch_or((u64 *)(r10 -8), r1)
    r1 = atomic64_fetch_xor((u64 *)(r10 -8), r1)
    r2 = atomic_fetch_add((u32 *)(r10 -16), r2)
    r2 = atomic_fetch_and((u32 *)(r10 -16), r2)
    r2 = atomic_fetch_or((u32 *)(r10 -16), r2)
    r2 = atomic_fetch_xor((u32 *)(r10 -16), r2)
    r1 = atomic64_xchg((u64 *)(r10 -8), r1)
    r2 = atomic_xchg((u32 *)(r10 -16), r2)
    r0 = 0
    r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)
    r0 = atomic_cmpxchg((u32 *)(r10 -16), r0, r2)
    r5 = load_acquire((u64 *)(r10 -8))
    r5 = load_acquire((u32 *)(r10 -16))
    r5 = load_acquire((u16 *)(r10 -20))
    r5 = load_acquire((u8 *)(r10 -22))
    store_release((u64 *)(r10 -8), r1)
    store_release((u32 *)(r10 -16), r2)
    store_release((u16 *)(r10 -20), r1)
    store_release((u8 *)(r10 -22), r2)
    r0 = 0
    exit
";

const LD_ABS_PROGRAM: &str = "
    r6 = r1
    r7 = 4
    r0 = *(u8 *)skb[0]
    r0 = *(u16 *)skb[2]
    r0 = *(u32 *)skb[4]
    r0 = *(u8 *)skb[r7 + 0]
    r0 = *(u16 *)skb[r7 + -2]
    r0 = *(u32 *)skb[r7 + 4]
    exit
";

const CALL_PROGRAM: &str = "
    r1 = 1
    call pc+3
    call sub
    r0 = 0
    exit
    r0 = 1
    exit
sub:
    call bpf_get_prandom_u32#7
    w0 = 0
    exit
";

#[test]
fn disassembly_matches_the_kernel_verifier_log() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED disassembly_matches_the_kernel_verifier_log: {reason}");
        return;
    }
    check("alu", &alu_program());
    check("jmp", &jmp_program());
    check("mem", MEM_PROGRAM);
    check("ld_abs", LD_ABS_PROGRAM);
    check("call", CALL_PROGRAM);
}
