//! A generator of random struct_ops programs over a small host struct graph, for
//! soundness testing of typed pointers (`PTR_TO_BTF_ID`): loads at every offset and
//! size of the argument struct (nested struct, array, pointer members), walks through
//! pointer members and loads through what they give (probe loads), writes where the ops
//! type allows and where it does not, spills and fills of pointers, pointer arithmetic
//! and null checks. Deterministic in its seed.
//!
//! The host types (see `host_btf` in `struct_ops_soundness.rs`):
//!
//! ```c
//! struct leaf { long x; int y; int z; };                    // 16 bytes
//! struct node {                                             // 80 bytes
//!     long a; int b; short c; char d[2];                    // 0, 8, 12, 14
//!     struct node *next; struct leaf *leaf;                 // 16, 24
//!     struct leaf inl; long arr[4];                         // 32, 48
//! };
//! struct fuzz_ops { long (*f)(struct node *n, long k); long (*g)(struct node *n, long k); };
//! ```
//!
//! Writes are allowed to `node.a` and `node.arr` only.

use std::fmt::Write as _;

pub use super::progen::Rng;

/// Size of `struct node`.
pub const NODE_SIZE: usize = 80;
/// Size of `struct leaf`.
pub const LEAF_SIZE: usize = 16;
/// Offsets of `node.next` and `node.leaf`.
pub const NEXT_OFF: usize = 16;
pub const LEAF_OFF: usize = 24;

const SIZES: [(&str, i64); 4] = [("u8", 1), ("u16", 2), ("u32", 4), ("u64", 8)];
const SX: [(&str, i64); 3] = [("s8", 1), ("s16", 2), ("s32", 4)];

/// Generates one program (assembler text). r6 = the node argument (trusted), r7 = k,
/// r8 = a pointer read out of the node (when a walk happened), r9 = one more level.
/// `array_fd` is an `ARRAY` map (4-byte keys, 16-byte values, 4 entries) the helper
/// snippets look up and update.
pub fn program(rng: &mut Rng, array_fd: u32) -> String {
    let mut s = String::new();
    let mut label = 0u32;
    let mut fresh = || {
        label += 1;
        format!("l{label}")
    };
    s.push_str("r6 = *(u64 *)(r1 +0)\nr7 = *(u64 *)(r1 +8)\n");
    // r1 (the argument array) never survives: its address differs between calls, so
    // a program returning it (which the kernel accepts from privileged loaders) would
    // make the engines look different.
    let _ = writeln!(s, "r1 = {}", rng.below(64));
    for r in [0, 2, 3, 4, 5] {
        if rng.chance(95) {
            let _ = writeln!(s, "r{r} = {}", rng.below(64) as i64 - 8);
        }
    }
    // r8 and r9 start as walks (nearly always).
    if rng.chance(97) {
        walk(rng, &mut s, 8, 6);
    }
    if rng.chance(95) {
        let from = if rng.chance(80) { 6 } else { 8 };
        walk(rng, &mut s, 9, from);
    }
    let n = 3 + rng.below(12);
    for _ in 0..n {
        if rng.chance(12) {
            helper_call(rng, &mut s, &mut fresh, array_fd);
        } else {
            snippet(rng, &mut s, &mut fresh);
        }
    }
    if rng.chance(95) {
        let _ = writeln!(s, "r0 = r{}", rng.below(6));
    }
    s.push_str("exit\n");
    s
}

/// `rd = *(u64 *)(rs + next|leaf)`, now and then at a wrong offset or width.
fn walk(rng: &mut Rng, s: &mut String, rd: u64, rs: u64) {
    let off = match rng.below(40) {
        0..=21 => NEXT_OFF as i64,
        22..=37 => LEAF_OFF as i64,
        38 => *rng.pick(&[20i64, 12, 0, 8]),
        _ => rng.below(NODE_SIZE as u64 + 8) as i64,
    };
    let width = if rng.chance(97) { "u64" } else { "u32" };
    let _ = writeln!(s, "r{rd} = *({width} *)(r{rs} +{off})");
}

/// Scalar members of `struct node` as `(offset, size)`: `a`, `b`, `c`, `d[0]`, `d[1]`,
/// `inl.x`, `inl.y`, `inl.z`, `arr[0..4]`.
const NODE_SCALARS: [(i64, i64); 13] = [
    (0, 8),
    (8, 4),
    (12, 2),
    (14, 1),
    (15, 1),
    (32, 8),
    (40, 4),
    (44, 4),
    (48, 8),
    (56, 8),
    (64, 8),
    (72, 8),
    (72, 8),
];

/// Spans that are scalar in both `struct node` and `struct leaf` (a walked pointer may
/// be either): `a`/`x`, `b`/`y`, `c`/`z`, `d[0]`/`z`, `d[1]`/`z`.
const COMMON_SCALARS: [(i64, i64); 5] = [(0, 8), (8, 4), (12, 2), (14, 1), (15, 1)];

/// A read inside one scalar member of `spans`: `(type name, offset)`, the size at most
/// the member's (a part of a member may be read).
fn member_access(rng: &mut Rng, spans: &[(i64, i64)], signed: bool) -> (&'static str, i64) {
    let &(start, len) = rng.pick(spans);
    let fits: Vec<(&str, i64)> = if signed { &SX[..] } else { &SIZES[..] }
        .iter()
        .copied()
        .filter(|&(_, sz)| sz <= len)
        .collect();
    let Some(&(name, size)) = fits.get(rng.below(fits.len() as u64) as usize) else {
        return ("u8", start);
    };
    (name, start + size * rng.below((len / size) as u64) as i64)
}

/// A load offset for a struct of `size` bytes, sometimes past its end.
fn offset(rng: &mut Rng, size: usize, access: i64) -> i64 {
    let mut off = rng.below(size as u64) as i64;
    if rng.chance(80) {
        off -= off % access;
    }
    if rng.chance(10) {
        off += access;
    }
    if rng.chance(3) {
        off = -(rng.below(8) as i64) - 1;
    }
    off
}

fn scratch(rng: &mut Rng) -> u64 {
    rng.below(6)
}

fn snippet(rng: &mut Rng, s: &mut String, fresh: &mut impl FnMut() -> String) {
    match rng.below(12) {
        // A load from the node argument, nearly always inside one scalar member.
        0 | 1 => {
            let signed = rng.chance(20);
            let (name, off) = if rng.chance(92) {
                member_access(rng, &NODE_SCALARS, signed)
            } else {
                let (name, size) = *rng.pick(&SIZES);
                (name, offset(rng, NODE_SIZE, size))
            };
            let _ = writeln!(s, "r{} = *({name} *)(r6 {off:+})", scratch(rng));
        }
        // A load through a walked pointer (a probe), sometimes behind a null check.
        2 | 3 => {
            let base = *rng.pick(&[8u64, 8, 9]);
            let signed = rng.chance(15);
            let (name, off) = if rng.chance(92) {
                member_access(rng, &COMMON_SCALARS, signed)
            } else {
                let (name, size) = *rng.pick(&SIZES);
                (name, offset(rng, LEAF_SIZE, size))
            };
            let skip = fresh();
            let check = rng.chance(40);
            if check {
                let _ = writeln!(s, "if r{base} == 0 goto {skip}");
            }
            let _ = writeln!(s, "r{} = *({name} *)(r{base} {off:+})", scratch(rng));
            if check {
                let _ = writeln!(s, "{skip}:");
            }
        }
        // A new walk.
        4 => {
            let (rd, rs) = *rng.pick(&[(8u64, 6u64), (9, 8), (8, 9), (9, 6)]);
            walk(rng, s, rd, rs);
        }
        // A write to the node argument: mostly where the ops type allows.
        5 | 6 => {
            let (name, size) = *rng.pick(&SIZES);
            let off = if rng.chance(92) {
                let allowed = if rng.chance(40) {
                    rng.below(8) as i64
                } else {
                    48 + rng.below(32) as i64
                };
                allowed - allowed % size
            } else {
                offset(rng, NODE_SIZE, size)
            };
            if rng.chance(50) {
                let _ = writeln!(s, "*({name} *)(r6 {off:+}) = r{}", scratch(rng));
            } else {
                let _ = writeln!(s, "*({name} *)(r6 {off:+}) = {}", rng.below(1000));
            }
        }
        // A write through a walked pointer (never allowed), or of a pointer.
        7 if rng.chance(30) => {
            let (name, size) = *rng.pick(&SIZES);
            let off = offset(rng, 8, size);
            if rng.chance(50) {
                let _ = writeln!(s, "*({name} *)(r8 {off:+}) = r{}", scratch(rng));
            } else {
                let _ = writeln!(s, "*(u64 *)(r6 +48) = r{}", *rng.pick(&[6u64, 8, 10]));
            }
        }
        // Spill and fill of a pointer or scalar.
        8 => {
            let src = *rng.pick(&[6u64, 8, 9, 0, 1]);
            let off = 8 * (1 + rng.below(8) as i64);
            let any = scratch(rng);
            let dst = if rng.chance(80) {
                src
            } else {
                *rng.pick(&[6u64, 8, 9, any])
            };
            let _ = writeln!(
                s,
                "*(u64 *)(r10 -{off}) = r{src}\nr{dst} = *(u64 *)(r10 -{off})"
            );
        }
        // Pointer arithmetic on a struct pointer, then a load.
        9 => {
            let base = *rng.pick(&[6u64, 8]);
            if rng.chance(70) {
                let add = rng.below(NODE_SIZE as u64) as i64;
                let _ = writeln!(
                    s,
                    "r1 = r{base}\nr1 += {add}\nr{} = *(u8 *)(r1 +0)",
                    scratch(rng)
                );
            } else {
                let i = scratch(rng);
                let _ = writeln!(
                    s,
                    "r{i} &= 7\nr1 = r{base}\nr1 += r{i}\nr{} = *(u8 *)(r1 +0)",
                    scratch(rng)
                );
            }
        }
        // Scalar work on k and loaded values, with a branch.
        10 => {
            let skip = fresh();
            let a = scratch(rng);
            let _ = writeln!(
                s,
                "r{a} += r7\nif r{a} > {} goto {skip}\nr{} ^= r{a}\n{skip}:",
                rng.below(100),
                scratch(rng)
            );
        }
        // Read an array element at a bounded index.
        _ => {
            let i = scratch(rng);
            let mask = *rng.pick(&[3u64, 3, 7]);
            let _ = writeln!(
                s,
                "r{i} &= {mask}\nr{i} <<= 3\nr1 = r6\nr1 += r{i}\nr{} = *(u64 *)(r1 +48)",
                scratch(rng)
            );
        }
    }
}

/// A helper call: the clock, or a lookup or update of the array map. Calls clobber
/// r1-r5 (and the program keeps its pointers in r6-r9).
fn helper_call(rng: &mut Rng, s: &mut String, fresh: &mut impl FnMut() -> String, array_fd: u32) {
    match rng.below(3) {
        0 => {
            let _ = writeln!(
                s,
                "call bpf_ktime_get_ns\nr{} = r0",
                *rng.pick(&[0u64, 2, 3])
            );
        }
        1 => {
            let key = rng.below(6);
            let skip = fresh();
            let (name, size) = *rng.pick(&SIZES);
            let off = rng.below(16) as i64 / size * size;
            let _ = writeln!(
                s,
                "*(u32 *)(r10 -4) = {key}\nr1 = map[id:{array_fd}]\nr2 = r10\nr2 += -4\n\
                 call bpf_map_lookup_elem\nif r0 == 0 goto {skip}\nr3 = *({name} *)(r0 +{off})\n\
                 r3 += r7\n*({name} *)(r0 +{off}) = r3\n{skip}:"
            );
        }
        _ => {
            let key = rng.below(6);
            let _ = writeln!(
                s,
                "*(u32 *)(r10 -4) = {key}\n*(u64 *)(r10 -24) = r7\n*(u64 *)(r10 -16) = {}\n\
                 r1 = map[id:{array_fd}]\nr2 = r10\nr2 += -4\nr3 = r10\nr3 += -24\nr4 = 0\n\
                 call bpf_map_update_elem",
                rng.below(100)
            );
        }
    }
    for r in 1..=5 {
        if rng.chance(80) {
            let _ = writeln!(s, "r{r} = {}", rng.below(64));
        }
    }
}
