//! Kernel differential test of ALU, jumps and stack memory.
//!
//! A seeded generator writes random programs over every ALU/ALU64 and
//! JMP/JMP32 opcode in both operand forms (plus neg, movsx, byte swaps,
//! `goto`/`gotol` in if/else shapes, `may_goto`, stack stores, loads,
//! sign-extending loads, atomics, load-acquire and store-release on a
//! scratch area), with edge-case
//! immediates and register values. Each program:
//!
//! - runs in the kernel as an XDP program (`BPF_PROG_LOAD`, then
//!   `BPF_PROG_TEST_RUN` on a 144-byte packet), whose epilogue stores
//!   r0..r9 and the 64-byte scratch area into the packet (`data_out`) and
//!   returns r0 (`retval`, its low 32 bits);
//! - runs in our interpreter, checked and unchecked, with an epilogue that
//!   stores the same 144 bytes into its context.
//!
//! The two must be byte-identical. Division by zero is included (as a
//! register operand; the verifier rejects a zero immediate). Programs
//! only jump forward, never touch r10 outside the stack accesses, and
//! save r1 (the context) before overwriting it, so the verifier accepts
//! them; the few it might reject are counted and must stay rare.
//!
//! One shape is avoided because the kernel gets it wrong: Linux 6.18's
//! precision backtracking (`backtrack_insn`) passes over an atomic
//! `fetch`/`xchg`/`cmpxchg` as if it did not define the register it loads,
//! so the stack slot that value came from is not marked precise. When a
//! branch is then decided by that value, a later path with a different
//! slot content is pruned as equivalent, and `opt_remove_dead_code`
//! deletes code that is reachable at run time: the kernel's result then
//! differs from the instruction set's
//! (`kernel_drops_code_after_an_atomic_fetch_from_a_known_stack_slot`
//! reproduces it). Atomics therefore work on their own 16
//! scratch bytes, which only non-zero byte stores initialize, so the
//! verifier never knows what a fetch loads.
//!
//! A second kernel bug is sidestepped the same way: a 32-bit `cmpxchg`
//! must zero-extend r0, but when the only 64-bit read of that r0 lies on
//! a path the verifier pruned, Linux 6.18 does not add the zero-extension
//! x86 needs and r0 keeps its old upper half
//! (`kernel_misses_the_cmpxchg32_zero_extension_on_pruned_paths` shows
//! it). The generator follows every 32-bit `cmpxchg` with `w0 = w0`.
//!
//! On a mismatch the test shrinks the program (replacing ops by
//! `goto pc+0` while the difference remains), prints it, and saves it for
//! the ignored `adhoc` test, which replays a file and prints both sides
//! (`STRUCTOPS_LOG=1` adds the verifier log).
//!
//! 5,000 programs by default; `STRUCTOPS_LONG=1` runs 100,000 (or
//! `STRUCTOPS_PROGRAMS=N`). `STRUCTOPS_SEED` changes the base seed. Needs
//! root and BPF; skips with the reason otherwise.

#![cfg(target_os = "linux")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use structops_isa::{
    AluOp, AtomicOp, Bits, Cond, Endian, Imm64, Op, Program, Reg, Source, Width, assemble,
    disasm::{Bpftool, Lossless},
    disassemble,
};
use structops_verifier::proto::HelperProto;
use structops_verifier::{CtxField, LogOptions, MapInfo, MapRef, ProgInfo, VerifierEnv};
use structops_vm::{Code, Engine, InsnFacts, Interpreter, NoEnv, Region};

// ---- raw bpf(2) ----

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

/// `union bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// A program fd, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it exactly once.
        unsafe { libc::close(self.0) };
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Loads `prog` as XDP; on failure returns the errno and (with
/// `want_log`) the verifier log.
fn load(prog: &Program, want_log: bool) -> Result<Fd, (i32, String)> {
    let (fd, log) = load_logged(prog, u32::from(want_log));
    fd.map_err(|e| (e, log))
}

/// Loads `prog` as XDP at verifier log level `log_level` (0: no log);
/// returns the fd or errno, and the log.
fn load_logged(prog: &Program, log_level: u32) -> (Result<Fd, i32>, String) {
    let insns = prog.encode();
    let license = c"GPL";
    let mut log = if log_level > 0 {
        vec![0u8; 16 << 20]
    } else {
        Vec::new()
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: u32::try_from(insns.len()).expect("small program"),
        // `Insn` has the layout of `struct bpf_insn`.
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size: u32::try_from(log.len()).expect("16 MiB"),
        log_buf: if log_level > 0 {
            log.as_mut_ptr() as u64
        } else {
            0
        },
        ..ProgLoadAttr::default()
    };
    // SAFETY: every pointer in `attr` refers to a live buffer of the stated
    // size for the duration of the call.
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

/// Test-runs `fd` once on a zeroed packet; returns `retval` and the
/// packet afterwards.
fn test_run(fd: &Fd) -> Result<(u32, [u8; OUT]), i32> {
    let data_in = [0u8; OUT];
    let mut data_out = [0u8; OUT];
    let mut attr = TestRunAttr {
        prog_fd: fd.0 as u32,
        data_size_in: OUT as u32,
        data_size_out: OUT as u32,
        data_in: data_in.as_ptr() as u64,
        data_out: data_out.as_mut_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: `data_in`/`data_out` are live buffers of `OUT` bytes; the
    // kernel writes at most `data_size_out` bytes and updates `attr`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if r < 0 {
        return Err(errno());
    }
    assert_eq!(attr.data_size_out as usize, OUT, "packet size changed");
    Ok((attr.retval, data_out))
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    let probe = assemble("r0 = 2\nexit").expect("probe assembles");
    let fd = match load(&probe, false) {
        Ok(fd) => fd,
        Err((e, _)) => {
            return Some(format!(
                "bpf(BPF_PROG_LOAD) of a trivial XDP program fails: {}",
                std::io::Error::from_raw_os_error(e)
            ));
        }
    };
    match test_run(&fd) {
        Ok((2, _)) => None,
        Ok((r, _)) => Some(format!("BPF_PROG_TEST_RUN returned {r} for `r0 = 2`")),
        Err(e) => Some(format!(
            "BPF_PROG_TEST_RUN fails: {}",
            std::io::Error::from_raw_os_error(e)
        )),
    }
}

// ---- program generator ----

/// splitmix64: small, seedable, good enough for test generation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const EDGE64: [u64; 18] = [
    0,
    1,
    2,
    u64::MAX,
    i64::MIN as u64,
    i64::MAX as u64,
    i32::MIN as i64 as u64,
    i32::MAX as u64,
    0xffff_ffff,
    0x8000_0000,
    0x7fff_ffff,
    0x1_0000_0000,
    0xffff_ffff_0000_0000,
    0x8000_0000_0000_0001,
    31,
    32,
    63,
    64,
];

const EDGE32: [i32; 14] = [
    0,
    1,
    -1,
    2,
    -2,
    i32::MIN,
    i32::MAX,
    31,
    32,
    63,
    64,
    0x7fff,
    -0x8000,
    0xff,
];

fn value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 | 1 => rng.pick(&EDGE64),
        2 => rng.next(),
        _ => rng.below(256),
    }
}

fn imm(rng: &mut Rng) -> i32 {
    if rng.chance(60) {
        rng.pick(&EDGE32)
    } else {
        rng.next() as i32
    }
}

/// One of r0..r9 (never r10; r1 holds a scalar after the prologue).
fn reg(rng: &mut Rng) -> Reg {
    Reg::ALL[rng.below(10) as usize]
}

fn bits(rng: &mut Rng) -> Bits {
    if rng.chance(50) { Bits::B32 } else { Bits::B64 }
}

/// Scratch area: 64 bytes at r10-152 .. r10-89, initialized by the
/// prologue. Spills of r0..r9 live at r10-88 .. r10-9, ctx at r10-8.
const SCRATCH: i16 = -152;
const SCRATCH_LEN: i16 = 64;
/// The first 16 scratch bytes are the atomics' own: initialized with
/// non-zero byte stores and never written by plain stores, so the
/// verifier never knows their contents (see `body`).
const ATOMIC_LEN: i16 = 16;
const OUT: usize = 80 + SCRATCH_LEN as usize;

/// A naturally aligned offset (the verifier requires aligned stack
/// accesses) inside `[start, start + len)`.
fn aligned_off(rng: &mut Rng, width: Width, start: i16, len: i16) -> i16 {
    let w = width.bytes() as i16;
    start + w * rng.range(0, i64::from(len / w - 1)) as i16
}

/// Anywhere in the scratch area (loads).
fn scratch_off(rng: &mut Rng, width: Width) -> i16 {
    aligned_off(rng, width, SCRATCH, SCRATCH_LEN)
}

/// The plain part of the scratch area (stores).
fn plain_off(rng: &mut Rng, width: Width) -> i16 {
    aligned_off(rng, width, SCRATCH + ATOMIC_LEN, SCRATCH_LEN - ATOMIC_LEN)
}

/// The atomics' part of the scratch area.
fn atomic_off(rng: &mut Rng, width: Width) -> i16 {
    aligned_off(rng, width, SCRATCH, ATOMIC_LEN)
}

/// A body op together with, for jumps, how many following ops it skips.
struct Item {
    op: Op,
    skip: Option<usize>,
}

fn plain(op: Op) -> Item {
    Item { op, skip: None }
}

fn alu_op(rng: &mut Rng) -> Op {
    let bits = bits(rng);
    let op = rng.pick(&AluOp::ALL);
    let dst = reg(rng);
    let src = if rng.chance(50) {
        Source::Reg(reg(rng))
    } else {
        let width: i64 = if bits == Bits::B64 { 64 } else { 32 };
        let k = match op {
            // The verifier rejects out-of-range immediate shifts...
            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => rng.range(0, width - 1) as i32,
            // ...and immediate division by zero.
            AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod => match imm(rng) {
                0 => -1,
                k => k,
            },
            _ => imm(rng),
        };
        Source::Imm(k)
    };
    Op::Alu { bits, op, dst, src }
}

fn simple_op(rng: &mut Rng) -> Op {
    match rng.below(20) {
        0 => Op::Neg {
            bits: bits(rng),
            dst: reg(rng),
        },
        1 => {
            let bits = bits(rng);
            let from = match (bits, rng.below(3)) {
                (_, 0) => Width::B,
                (Bits::B32, _) | (_, 1) => Width::H,
                _ => Width::W,
            };
            Op::MovSx {
                bits,
                dst: reg(rng),
                src: reg(rng),
                from,
            }
        }
        2 => Op::End {
            order: if rng.chance(50) {
                Endian::Le
            } else {
                Endian::Be
            },
            width: rng.pick(&[Width::H, Width::W, Width::DW]),
            dst: reg(rng),
        },
        3 => Op::Bswap {
            width: rng.pick(&[Width::H, Width::W, Width::DW]),
            dst: reg(rng),
        },
        4 => Op::LdImm64 {
            dst: reg(rng),
            imm: Imm64::Const(value(rng)),
        },
        5 | 6 => {
            let width = rng.pick(&Width::ALL);
            let off = plain_off(rng, width);
            let src = if rng.chance(50) {
                Source::Reg(reg(rng))
            } else {
                Source::Imm(imm(rng))
            };
            Op::Store {
                width,
                dst: Reg::R10,
                off,
                src,
            }
        }
        7 | 8 => {
            let width = rng.pick(&Width::ALL);
            let off = scratch_off(rng, width);
            Op::Load {
                width,
                dst: reg(rng),
                src: Reg::R10,
                off,
            }
        }
        9 => {
            let width = rng.pick(&[Width::B, Width::H, Width::W]);
            let off = scratch_off(rng, width);
            Op::LoadSx {
                width,
                dst: reg(rng),
                src: Reg::R10,
                off,
            }
        }
        10 | 11 => {
            let width = rng.pick(&[Width::W, Width::DW]);
            let off = atomic_off(rng, width);
            Op::Atomic {
                width,
                op: rng.pick(&AtomicOp::ALL),
                dst: Reg::R10,
                off,
                src: reg(rng),
            }
        }
        12 => {
            let width = rng.pick(&Width::ALL);
            Op::LoadAcquire {
                width,
                dst: reg(rng),
                src: Reg::R10,
                off: scratch_off(rng, width),
            }
        }
        13 => {
            let width = rng.pick(&Width::ALL);
            Op::StoreRelease {
                width,
                dst: Reg::R10,
                off: plain_off(rng, width),
                src: reg(rng),
            }
        }
        _ => alu_op(rng),
    }
}

fn jmp_op(rng: &mut Rng) -> Op {
    let bits = bits(rng);
    let src = if rng.chance(50) {
        Source::Reg(reg(rng))
    } else {
        Source::Imm(imm(rng))
    };
    Op::Jmp {
        bits,
        cond: rng.pick(&Cond::ALL),
        dst: reg(rng),
        src,
        off: 0,
    }
}

/// The random middle of a program.
fn body(rng: &mut Rng, len: usize) -> Vec<Item> {
    let mut items = Vec::with_capacity(len + 8);
    while items.len() < len {
        match rng.below(100) {
            // Conditional forward jump over a few ops (wherever they land).
            0..=11 => items.push(Item {
                op: jmp_op(rng),
                skip: Some(rng.below(8) as usize),
            }),
            // if/else: cond jump over A and the goto; goto over B.
            12..=14 => {
                let mut a = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    simple(rng, &mut a);
                }
                let mut b = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    simple(rng, &mut b);
                }
                items.push(Item {
                    op: jmp_op(rng),
                    skip: Some(a.len() + 1),
                });
                items.append(&mut a);
                let goto = if rng.chance(50) {
                    Op::Ja { off: 0 }
                } else {
                    Op::Gotol { off: 0 }
                };
                items.push(Item {
                    op: goto,
                    skip: Some(b.len()),
                });
                items.append(&mut b);
            }
            15 => items.push(Item {
                op: Op::MayGoto { off: 0 },
                skip: Some(1 + rng.below(3) as usize),
            }),
            _ => simple(rng, &mut items),
        }
    }
    items
}

/// Appends one straight-line op (two for a 32-bit `cmpxchg`).
///
/// A 32-bit `cmpxchg` is followed by `w0 = w0`: x86's `cmpxchg` leaves the
/// upper half of rax alone when the comparison succeeds, and Linux 6.18
/// misses the zero-extension it must add when the only 64-bit read of r0
/// is on a path the verifier pruned (see
/// `kernel_misses_the_cmpxchg32_zero_extension_on_pruned_paths`). Our own
/// tests check that `cmpxchg` zero-extends.
fn simple(rng: &mut Rng, items: &mut Vec<Item>) {
    let op = simple_op(rng);
    items.push(plain(op));
    if let Op::Atomic {
        width: Width::W,
        op: AtomicOp::CmpXchg,
        ..
    } = op
    {
        items.push(plain(Op::Alu {
            bits: Bits::B32,
            op: AluOp::Mov,
            dst: Reg::R0,
            src: Source::Reg(Reg::R0),
        }));
    }
}

/// Turns skip counts into slot offsets (clamped to the end of the body).
fn resolve(items: &[Item]) -> Vec<Op> {
    let slots: Vec<usize> = items.iter().map(|i| i.op.slots()).collect();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(skip) = item.skip else {
                return item.op;
            };
            let end = (i + 1 + skip).min(items.len());
            let off: usize = slots[i + 1..end].iter().sum();
            let mut op = item.op;
            match &mut op {
                Op::Jmp { off: o, .. } | Op::Ja { off: o } | Op::MayGoto { off: o } => {
                    *o = i16::try_from(off).expect("short jump");
                }
                Op::Gotol { off: o } => *o = i32::try_from(off).expect("short jump"),
                _ => {}
            }
            op
        })
        .collect()
}

fn st(dst: Reg, off: i16, src: Reg) -> Op {
    Op::Store {
        width: Width::DW,
        dst,
        off,
        src: Source::Reg(src),
    }
}

fn ld(dst: Reg, src: Reg, off: i16) -> Op {
    Op::Load {
        width: Width::DW,
        dst,
        src,
        off,
    }
}

/// Saves ctx, fills the scratch area, sets r0..r9.
fn prologue(rng: &mut Rng) -> Vec<Op> {
    let mut ops = vec![st(Reg::R10, -8, Reg::R1)];
    for b in 0..ATOMIC_LEN {
        ops.push(Op::Store {
            width: Width::B,
            dst: Reg::R10,
            off: SCRATCH + b,
            src: Source::Imm(1 + rng.below(255) as i32),
        });
    }
    for j in (ATOMIC_LEN / 8)..(SCRATCH_LEN / 8) {
        ops.push(Op::LdImm64 {
            dst: Reg::R0,
            imm: Imm64::Const(value(rng)),
        });
        ops.push(st(Reg::R10, SCRATCH + 8 * j, Reg::R0));
    }
    for r in Reg::ALL.iter().take(10) {
        ops.push(Op::LdImm64 {
            dst: *r,
            imm: Imm64::Const(value(rng)),
        });
    }
    ops
}

/// Spills r0..r9 to r10-16-8i.
fn spill() -> Vec<Op> {
    (0..10)
        .map(|i| st(Reg::R10, -16 - 8 * i as i16, Reg::ALL[i]))
        .collect()
}

/// Copies the spills and the scratch area to `[base, base + OUT)`.
fn copy_out(base: Reg) -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..10i16 {
        ops.push(ld(Reg::R5, Reg::R10, -16 - 8 * i));
        ops.push(st(base, 8 * i, Reg::R5));
    }
    for j in 0..(SCRATCH_LEN / 8) {
        ops.push(ld(Reg::R5, Reg::R10, SCRATCH + 8 * j));
        ops.push(st(base, 80 + 8 * j, Reg::R5));
    }
    ops
}

/// The kernel's epilogue: write into the packet, return r0.
fn kernel_epilogue() -> Vec<Op> {
    let mut ops = spill();
    ops.push(ld(Reg::R1, Reg::R10, -8));
    // r2 = data, r3 = data_end (u32 fields of xdp_md).
    for (dst, off) in [(Reg::R2, 0), (Reg::R3, 4)] {
        ops.push(Op::Load {
            width: Width::W,
            dst,
            src: Reg::R1,
            off,
        });
    }
    ops.push(Op::Alu {
        bits: Bits::B64,
        op: AluOp::Mov,
        dst: Reg::R4,
        src: Source::Reg(Reg::R2),
    });
    ops.push(Op::Alu {
        bits: Bits::B64,
        op: AluOp::Add,
        dst: Reg::R4,
        src: Source::Imm(OUT as i32),
    });
    let copy = copy_out(Reg::R2);
    ops.push(Op::Jmp {
        bits: Bits::B64,
        cond: Cond::Gt,
        dst: Reg::R4,
        src: Source::Reg(Reg::R3),
        off: i16::try_from(copy.len()).expect("short"),
    });
    ops.extend(copy);
    ops.push(ld(Reg::R0, Reg::R10, -16));
    ops.push(Op::Exit);
    ops
}

/// Our epilogue: write into the context (our 144-byte buffer), return r0.
fn interp_epilogue() -> Vec<Op> {
    let mut ops = spill();
    ops.push(ld(Reg::R1, Reg::R10, -8));
    ops.extend(copy_out(Reg::R1));
    ops.push(ld(Reg::R0, Reg::R10, -16));
    ops.push(Op::Exit);
    ops
}

/// The shared part of one seed's programs (prologue and body), and the
/// index of the first body op.
fn generate_common(seed: u64) -> (Vec<Op>, usize) {
    let mut rng = Rng(seed);
    let len = 60 + rng.below(100) as usize;
    let mut common = prologue(&mut rng);
    let body_start = common.len();
    common.extend(resolve(&body(&mut rng, len)));
    (common, body_start)
}

/// The kernel's and our program around `common`.
fn programs(common: &[Op]) -> (Program, Program) {
    let kernel = Program::from_ops(common.iter().copied().chain(kernel_epilogue()));
    let ours = Program::from_ops(common.iter().copied().chain(interp_epilogue()));
    (kernel, ours)
}

/// The two programs of one seed: (kernel, interpreter).
fn generate(seed: u64) -> (Program, Program) {
    programs(&generate_common(seed).0)
}

/// Runs both sides; `None` when the kernel rejects the program, else
/// whether (and how) they differ.
fn compare(common: &[Op]) -> Option<Result<(), String>> {
    let (kprog, oprog) = programs(common);
    let fd = load(&kprog, false).ok()?;
    let (retval, kout) = test_run(&fd).ok()?;
    drop(fd);
    let (r0, out) = interpret(&oprog);
    if (retval, kout) == (r0 as u32, out) {
        return Some(Ok(()));
    }
    let diff: Vec<String> = regs_of(&kout)
        .into_iter()
        .zip(regs_of(&out))
        .filter(|(k, o)| k != o)
        .map(|(k, o)| format!("kernel {k} / ours {o}"))
        .collect();
    Some(Err(format!(
        "kernel retval {retval:#x}, ours r0 {r0:#x}; differences: {diff:?}"
    )))
}

/// Shrinks a mismatching program: replaces body ops by no-op jumps
/// (`goto +0`, keeping every offset valid) while the mismatch remains.
fn shrink(mut common: Vec<Op>, body_start: usize) -> Vec<Op> {
    let nop = Op::Ja { off: 0 };
    let mut i = body_start;
    while i < common.len() {
        if common[i] != nop {
            let mut trial = common.clone();
            let slots = trial[i].slots();
            trial.splice(i..=i, std::iter::repeat_n(nop, slots));
            if matches!(compare(&trial), Some(Err(_))) {
                common = trial;
                continue;
            }
        }
        i += 1;
    }
    common
}

/// Our verifier's view of the interpreter programs: a 144-byte context of
/// scalars, no maps, no helpers.
struct AluEnv;

impl VerifierEnv for AluEnv {
    fn map(&self, _: MapRef) -> Option<MapInfo> {
        None
    }

    fn helper(&self, _: i32) -> Option<HelperProto> {
        None
    }

    fn ctx_access(&self, off: i32, size: u32, _write: bool) -> Option<CtxField> {
        let s = size as i32;
        (off >= 0 && off + s <= OUT as i32 && off % s == 0).then_some(CtxField::Scalar)
    }
}

/// Programs whose facts let the JIT drop a division check, and a zero
/// extension; programs our verifier accepted.
static DIV_FACTS: AtomicU64 = AtomicU64::new(0);
static ZEXT_FACTS: AtomicU64 = AtomicU64::new(0);
static VERIFIED: AtomicU64 = AtomicU64::new(0);

/// The JIT's code for `prog` with our verifier's facts, when it accepts it.
fn code_with_facts(prog: &Program) -> Option<Code> {
    let info = ProgInfo {
        gpl_compatible: true,
        ..ProgInfo::default()
    };
    let v =
        structops_verifier::verify(&prog.encode(), &info, &AluEnv, &LogOptions::default()).ok()?;
    let facts: Vec<InsnFacts> = v
        .facts()
        .iter()
        .map(|f| InsnFacts {
            zext_redundant: f.zext_redundant,
            divisor_nonzero: f.divisor_nonzero,
            divisor_not_minus_one: f.divisor_not_minus_one,
            probe_mem: f.probe_mem,
            frame_depth: f.frame_depth,
        })
        .collect();
    VERIFIED.fetch_add(1, Ordering::Relaxed);
    if facts.iter().any(|f| f.divisor_nonzero) {
        DIV_FACTS.fetch_add(1, Ordering::Relaxed);
    }
    if facts.iter().any(|f| f.zext_redundant) {
        ZEXT_FACTS.fetch_add(1, Ordering::Relaxed);
    }
    let rewritten = Program::decode(v.insns()).ok()?;
    // SAFETY: the facts are the verifier's, about the program it accepted.
    Some(unsafe { Code::with_facts(&rewritten, &facts) })
}

/// Our result: r0 and the 144 bytes.
fn interpret(prog: &Program) -> (u64, [u8; OUT]) {
    let code = Code::new(prog);
    let mut vm = Interpreter::new();
    let mut out = [0u8; OUT];
    let r0 = vm
        .run_checked(&code, &mut NoEnv, Region::read_write(&mut out), &[])
        .unwrap_or_else(|e| panic!("checked run failed: {e}"));
    let mut out2 = [0u8; OUT];
    // SAFETY: the checked run just showed every access stays in the stack
    // and the 144-byte context, and the program is deterministic.
    let r0_fast = unsafe { vm.run_unchecked(&code, &mut NoEnv, out2.as_mut_ptr() as u64) }
        .unwrap_or_else(|e| panic!("unchecked run failed: {e}"));
    assert_eq!((r0, out), (r0_fast, out2), "checked and unchecked disagree");
    let mut out3 = [0u8; OUT];
    // SAFETY: as above.
    let r0_jit = unsafe { vm.run(Engine::Jit, &code, &mut NoEnv, out3.as_mut_ptr() as u64) }
        .unwrap_or_else(|e| panic!("JIT run failed: {e}"));
    assert_eq!(
        (r0, out),
        (r0_jit, out3),
        "the interpreter and the JIT disagree"
    );
    if let Some(fast) = code_with_facts(prog) {
        let mut out4 = [0u8; OUT];
        // SAFETY: as above; the facts are the verifier's.
        let r0_facts = unsafe { vm.run(Engine::Jit, &fast, &mut NoEnv, out4.as_mut_ptr() as u64) }
            .unwrap_or_else(|e| panic!("JIT run with facts failed: {e}"));
        assert_eq!(
            (r0, out),
            (r0_facts, out4),
            "the interpreter and the JIT with verifier facts disagree"
        );
    }
    (r0, out)
}

/// The JIT against the interpreter on the generator's programs, without
/// the kernel: 2,000 programs by default, `STRUCTOPS_JIT_PROGRAMS=N` for
/// more (`STRUCTOPS_SEED` as above). `interpret` compares checked,
/// unchecked and JIT runs byte for byte.
#[test]
fn jit_matches_the_interpreter_on_generated_programs() {
    let count: u64 = std::env::var("STRUCTOPS_JIT_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let base: u64 = std::env::var("STRUCTOPS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0001);
    let start = Instant::now();
    let mut insns = 0u64;
    for i in 0..count {
        let seed = base.wrapping_add(i);
        let (_, prog) = generate(seed);
        insns += prog.slot_count() as u64;
        let result = std::panic::catch_unwind(|| interpret(&prog));
        if let Err(e) = result {
            let text = disassemble(&prog, &Bpftool);
            panic!("seed {seed:#x}: {e:?}\n{text}");
        }
    }
    let (verified, div, zext) = (
        VERIFIED.load(Ordering::Relaxed),
        DIV_FACTS.load(Ordering::Relaxed),
        ZEXT_FACTS.load(Ordering::Relaxed),
    );
    println!(
        "jit: {count} generated programs ({insns} instructions) identical on checked, unchecked \
         and JIT runs in {:.1} s; this binary ran {verified} verified programs on the JIT with their facts \
         ({div} with a division check dropped, {zext} with a zero extension dropped)",
        start.elapsed().as_secs_f64()
    );
    assert!(
        verified > count / 2 && div > 0 && zext > 0,
        "the facts are exercised"
    );
}

fn regs_of(out: &[u8; OUT]) -> Vec<String> {
    out.chunks(8)
        .enumerate()
        .map(|(i, c)| {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            if i < 10 {
                format!("r{i}={v:#x}")
            } else {
                format!("fp{}={v:#x}", i64::from(SCRATCH) + 8 * (i as i64 - 10))
            }
        })
        .collect()
}

#[test]
fn interpreter_matches_the_kernel_on_random_alu_programs() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    let long = std::env::var("STRUCTOPS_LONG").is_ok_and(|v| v == "1");
    let count: u64 = std::env::var("STRUCTOPS_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 100_000 } else { 5_000 });
    let base: u64 = std::env::var("STRUCTOPS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0001);
    println!("kernel_alu: {count} programs from seed {base:#x}");

    let start = Instant::now();
    let (mut compared, mut rejected, mut insns) = (0u64, 0u64, 0u64);
    for i in 0..count {
        let seed = base.wrapping_add(i);
        let (kprog, oprog) = generate(seed);
        let fd = match load(&kprog, false) {
            Ok(fd) => fd,
            Err((e, _)) => {
                rejected += 1;
                if rejected <= 3 {
                    let (_, log) = load(&kprog, true).err().unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(6).collect();
                    println!("seed {seed:#x}: kernel rejects (errno {e}): {tail:?}");
                }
                continue;
            }
        };
        let (retval, kout) =
            test_run(&fd).unwrap_or_else(|e| panic!("seed {seed:#x}: test run errno {e}"));
        drop(fd);
        let (r0, out) = interpret(&oprog);
        if (retval, kout) != (r0 as u32, out) {
            let (common, body_start) = generate_common(seed);
            let small = shrink(common, body_start);
            let why = match compare(&small) {
                Some(Err(why)) => why,
                _ => "the shrunk program no longer differs".into(),
            };
            // Saved for the `adhoc` test to replay.
            let path = std::env::temp_dir().join(format!("kernel_alu_{seed:#x}.s"));
            let text = disassemble(&Program::from_ops(small.iter().copied()), &Lossless);
            let saved = std::fs::write(&path, text).is_ok();
            panic!(
                "seed {seed:#x}: kernel retval {retval:#x}, ours r0 {r0:#x}\n\
                 shrunk (removed ops replaced by `goto pc+0`{}): {why}\n{}",
                if saved {
                    format!(", saved as {}", path.display())
                } else {
                    String::new()
                },
                disassemble(&programs(&small).0, &Bpftool)
            );
        }
        compared += 1;
        insns += kprog.slot_count() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "kernel_alu: {compared} programs ({insns} instructions) identical to the kernel, \
         {rejected} rejected by the verifier, {secs:.1} s ({:.0} programs/s)",
        compared as f64 / secs
    );
    assert!(
        rejected * 100 <= count,
        "the verifier rejected {rejected} of {count} programs: the generator is off"
    );
    assert!(compared > 0);
}

#[test]
fn generated_programs_are_deterministic_and_well_formed() {
    let (a, b) = generate(42);
    let (a2, b2) = generate(42);
    assert_eq!(a, a2);
    assert_eq!(b, b2);
    for op in a.ops() {
        assert!(op.validate().is_ok(), "{op:?}");
        // Nothing but the prologue and epilogue touches r1 as a pointer or
        // writes r10.
        if let Op::Alu { dst, .. } = op {
            assert_ne!(*dst, Reg::R10);
        }
    }
    // Every jump goes forward and lands inside the program.
    for (pc, op) in a.iter() {
        if let Some(t) = op.jump_target(pc) {
            assert!(t > pc && t < a.slot_count(), "pc {pc} -> {t}");
            assert!(a.op_at(t).is_some(), "pc {pc} lands inside an ld_imm64");
        }
    }
    // The interpreter runs it without errors.
    let (r0, out) = interpret(&b);
    assert_eq!(&out[..8], &r0.to_le_bytes());
}

/// Debugging aid: `STRUCTOPS_ASM=file cargo test -p structops-vm --test
/// kernel_alu adhoc -- --ignored --nocapture` runs the assembler text in
/// `file` as the shared part (it must save r1 at r10-8 and initialize
/// r0..r9 and the scratch area) and prints both sides' results.
#[test]
#[ignore = "debugging aid, needs STRUCTOPS_ASM"]
fn adhoc() {
    let Ok(path) = std::env::var("STRUCTOPS_ASM") else {
        println!("skipped: STRUCTOPS_ASM is not set");
        return;
    };
    let text = std::fs::read_to_string(&path).expect("readable file");
    let common = assemble(&text).expect("assembles").ops().to_vec();
    let (kprog, oprog) = programs(&common);
    match load(&kprog, false) {
        Err((e, _)) => println!(
            "kernel rejects ({e}):\n{}",
            load(&kprog, true).err().unwrap_or_default().1
        ),
        Ok(fd) => {
            let (retval, kout) = test_run(&fd).expect("test run");
            println!("kernel: retval {retval:#x} {:?}", regs_of(&kout));
        }
    }
    let (r0, out) = interpret(&oprog);
    println!("ours:   r0 {r0:#x} {:?}", regs_of(&out));
    if std::env::var("STRUCTOPS_LOG").is_ok() {
        println!("{}", load_logged(&kprog, 2).1);
    }
}

/// Runs the shared part `src` (assembler text that initializes r0..r9
/// and the scratch area) on our side and, when possible, in the kernel;
/// returns both 144-byte outputs.
fn replay(src: &str) -> ([u8; OUT], Option<[u8; OUT]>) {
    let common = assemble(src).expect("assembles").ops().to_vec();
    let (kprog, oprog) = programs(&common);
    let (_, out) = interpret(&oprog);
    if let Some(reason) = skip_reason() {
        println!("kernel side skipped: {reason}");
        return (out, None);
    }
    let fd = load(&kprog, false).unwrap_or_else(|(e, _)| panic!("kernel rejects: errno {e}"));
    let (_, kout) = test_run(&fd).expect("test run");
    (out, Some(kout))
}

/// Register `n` of a 144-byte output.
fn reg_of(out: &[u8; OUT], n: usize) -> u64 {
    u64::from_le_bytes(out[8 * n..8 * n + 8].try_into().expect("8 bytes"))
}

/// Initializes r1..r9 (r0 by the caller) and zeroes the scratch area.
const INIT: &str = "
        *(u64 *)(r10 -8) = r1
        r1 = 0
        r2 = 0
        r3 = 0
        r4 = 0
        r5 = 0
        r6 = 0
        r7 = 0
        r8 = 0
        r9 = 0
        *(u64 *)(r10 -152) = 0
        *(u64 *)(r10 -144) = 0
        *(u64 *)(r10 -136) = 0
        *(u64 *)(r10 -128) = 0
        *(u64 *)(r10 -120) = 0
        *(u64 *)(r10 -112) = 0
        *(u64 *)(r10 -104) = 0
        *(u64 *)(r10 -96) = 0
";

/// The kernel bug behind the `w0 = w0` after 32-bit `cmpxchg` in the
/// generator, reduced: `cmpxchg` succeeds (memory holds 5, w0 is 5), so
/// the kernel's x86 code leaves rax at 0x1122334400000005; the
/// instruction set says r0 = 5. The fall-through path overwrites r0 and
/// is verified first; the jump path reaches the checkpoint after `L` and
/// is pruned, so its 64-bit read of r0 in the epilogue never asks for the
/// zero-extension. Asserts our result; prints the kernel's.
#[test]
fn kernel_misses_the_cmpxchg32_zero_extension_on_pruned_paths() {
    let nops = "goto pc+0\n".repeat(10);
    let (out, kernel) = replay(&format!(
        "{INIT}
        *(u32 *)(r10 -152) = 5
        *(u32 *)(r10 -148) = 9
        r0 = 0x1122334400000005 ll
        r1 = 7
        r0 = atomic_cmpxchg((u32 *)(r10 -152), r0, r1)
        r2 = *(u32 *)(r10 -148)
        {nops}
        if w2 == 9 goto L
        r0 = 1
    L:
        {nops}
        r3 = 0
    "
    ));
    assert_eq!(reg_of(&out, 0), 5, "cmpxchg zero-extends r0");
    if let Some(kout) = kernel {
        let r0 = reg_of(&kout, 0);
        let verdict = if r0 == 5 {
            "zero-extended: this kernel is fixed"
        } else {
            "upper half kept: the kernel bug"
        };
        println!("kernel r0 = {r0:#x} ({verdict})");
    }
}

/// The kernel bug behind the separate atomic scratch bytes, reduced.
/// Slot fp-152 holds the known constant 0xff on the fall-through path of
/// `if r9 >= 1` (verified first) and an unknown value after the
/// `fetch_and` of the jump path. On the first path `fetch_xor` loads 0xff,
/// which decides `if w1 & w3` and should make the slot precise; the
/// backtracking passes over the fetch without doing so, the second path
/// is pruned as equivalent, and `r5 = 123` is deleted as dead code,
/// although at run time the jump path reaches it (w1 = 0xfe, w3 = 1).
#[test]
fn kernel_drops_code_after_an_atomic_fetch_from_a_known_stack_slot() {
    let nops = "goto pc+0\n".repeat(10);
    let (out, kernel) = replay(&format!(
        "{INIT}
        r0 = 0
        r2 = 0xfe
        r3 = 1
        *(u64 *)(r10 -136) = 9
        lock *(u64 *)(r10 -136) += r7
        r9 = *(u64 *)(r10 -136)
        r4 = 0xff
        *(u64 *)(r10 -152) = r4
        if r9 >= 1 goto A
        goto B
    A:
        r2 = atomic64_fetch_and((u64 *)(r10 -152), r2)
    B:
        {nops}
        r1 = atomic64_fetch_xor((u64 *)(r10 -152), r1)
        if w1 & w3 goto C
        r5 = 123
    C:
        r6 = 0
    "
    ));
    assert_eq!(reg_of(&out, 1), 0xfe);
    assert_eq!(
        reg_of(&out, 5),
        123,
        "the fall-through of `if w1 & w3` runs"
    );
    if let Some(kout) = kernel {
        let r5 = reg_of(&kout, 5);
        let verdict = if r5 == 123 {
            "ran: this kernel is fixed"
        } else {
            "skipped: the kernel bug"
        };
        println!("kernel r5 = {r5} ({verdict})");
    }
}
