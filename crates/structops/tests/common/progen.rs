//! A generator of random XDP programs for soundness testing of the verifier: programs
//! built from snippets that are *mostly* safe — packet loads behind `data_end` checks,
//! map-value accesses behind null checks, bounded variable offsets, stack spills and
//! fills, helper calls — with random offsets, sizes, bounds and register choices, so
//! that a fair share is accepted and the rest probes the edges of each rule.
//!
//! Every accepted program must run in the interpreter's checked mode without a fault
//! (no access outside the regions a run grants). The generator is deterministic in its
//! seed.

#![allow(dead_code, reason = "some test binaries use only the Rng")]

use std::fmt::Write as _;

/// SplitMix64: small, fast, good enough to pick instructions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The maps a generated program may use, by descriptor.
#[derive(Clone, Copy)]
pub struct GenMaps {
    /// An `ARRAY` with 4-byte keys.
    pub array_fd: u32,
    /// Its value size.
    pub array_value: u32,
    /// Its `max_entries`.
    pub array_entries: u32,
    /// A `HASH` with 8-byte keys.
    pub hash_fd: u32,
    /// Its value size.
    pub hash_value: u32,
}

const SIZES: [(&str, i64); 4] = [("u8", 1), ("u16", 2), ("u32", 4), ("u64", 8)];
const ALU: [&str; 11] = [
    "+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=", "<<=", ">>=", "s>>=",
];
const CONDS: [&str; 10] = ["==", "!=", ">", ">=", "<", "<=", "s>", "s>=", "s<", "s<="];

/// Decodes an input of the `verifier` and `jit_diff` fuzz targets into instructions and
/// a packet. An even first byte takes the rest as raw instructions (whole slots only)
/// with a zeroed 64-byte packet; an odd one takes the next (up to) 8 bytes as a
/// generator seed and the rest as the packet. `None` for inputs that hold no program.
/// Panics if the generator's text does not assemble (a bug of the generator).
pub fn decode_input<'a>(
    data: &'a [u8],
    maps: &GenMaps,
) -> Option<(Vec<structops_isa::Insn>, &'a [u8])> {
    const ZEROED: &[u8] = &[0; 64];
    let (&mode, rest) = data.split_first()?;
    if mode % 2 == 0 {
        let n = rest.len() / 8 * 8;
        let insns = structops_isa::Insn::parse_slice(&rest[..n]).ok()?;
        return (!insns.is_empty()).then_some((insns, ZEROED));
    }
    let mut seed = [0u8; 8];
    let take = rest.len().min(8);
    seed[..take].copy_from_slice(&rest[..take]);
    let text = program(&mut Rng::new(u64::from_le_bytes(seed)), maps);
    // A generator bug, not an input to refuse: a finding.
    let prog = structops_isa::assemble(&text).expect("the generator's output assembles");
    Some((prog.encode(), &rest[take..]))
}

/// Generates one program (assembler text).
///
/// Register conventions the snippets mostly keep: r6 = ctx, r7 = packet start,
/// r8 = packet end, r9 = a map value or NULL; r0–r5 are scratch. Random choices break
/// the conventions now and then (a scratch register where a pointer belongs, an
/// off-by-some bound), which is what the verifier must catch.
pub fn program(rng: &mut Rng, maps: &GenMaps) -> String {
    let mut s = String::new();
    let mut label = 0u32;
    let mut fresh = || {
        label += 1;
        format!("l{label}")
    };
    s.push_str("r6 = r1\n");
    s.push_str("r7 = *(u32 *)(r6 +0)\n");
    s.push_str("r8 = *(u32 *)(r6 +4)\n");
    // r9: a map value, looked up with a key on the stack.
    if rng.chance(50) {
        let key = rng.below(u64::from(maps.array_entries) + 2);
        let _ = writeln!(s, "*(u32 *)(r10 -4) = {key}");
        let _ = writeln!(s, "r1 = map[id:{}]", maps.array_fd);
    } else {
        let key = rng.below(8);
        let _ = writeln!(s, "*(u64 *)(r10 -8) = {key}");
        let _ = writeln!(s, "r1 = map[id:{}]", maps.hash_fd);
    }
    let key_off = if s.contains("(u32 *)(r10 -4)") {
        -4
    } else {
        -8
    };
    let _ = writeln!(
        s,
        "r2 = r10\nr2 += {key_off}\ncall bpf_map_lookup_elem\nr9 = r0"
    );
    // Scratch registers start initialized most of the time.
    for r in 0..=5 {
        if rng.chance(85) {
            let v = scalar_imm(rng);
            let _ = writeln!(s, "r{r} = {v}");
        }
    }
    let n = 3 + rng.below(12);
    for _ in 0..n {
        snippet(rng, maps, &mut s, &mut fresh);
    }
    if rng.chance(95) {
        let _ = writeln!(s, "r0 = {}", rng.below(5));
    }
    s.push_str("exit\n");
    s
}

fn scalar_imm(rng: &mut Rng) -> i64 {
    match rng.below(6) {
        0 => 0,
        1 => rng.below(16) as i64,
        2 => -(rng.below(16) as i64),
        3 => rng.below(1 << 12) as i64,
        4 => i64::from(i32::MAX) - rng.below(4) as i64,
        _ => i64::from(rng.next() as i32),
    }
}

fn reinit(rng: &mut Rng, s: &mut String) {
    for r in 1..=5 {
        if rng.chance(75) {
            let _ = writeln!(s, "r{r} = {}", scalar_imm(rng));
        }
    }
}

fn scratch(rng: &mut Rng) -> u64 {
    rng.below(6)
}

fn snippet(rng: &mut Rng, maps: &GenMaps, s: &mut String, fresh: &mut impl FnMut() -> String) {
    let call = rng.below(11) == 8;
    if call {
        helper_call(rng, maps, s);
        reinit(rng, s);
        return;
    }
    match rng.below(11) {
        // Scalar ALU, register or immediate.
        0 | 1 => {
            let (d, op) = (scratch(rng), *rng.pick(&ALU));
            let w = if rng.chance(30) { "w" } else { "r" };
            if rng.chance(50) {
                let mut imm = scalar_imm(rng);
                if matches!(op, "<<=" | ">>=" | "s>>=") {
                    imm = rng.below(if w == "w" { 32 } else { 64 }) as i64;
                }
                if matches!(op, "/=" | "%=") && imm == 0 {
                    imm = 3;
                }
                let _ = writeln!(s, "{w}{d} {op} {imm}");
            } else {
                let src = scratch(rng);
                let _ = writeln!(s, "{w}{d} {op} {w}{src}");
            }
        }
        // Packet load behind a data_end check (sometimes an off-by-some check).
        2 | 3 => {
            let (name, size) = *rng.pick(&SIZES);
            let off = rng.below(64) as i64;
            let mut need = off + size;
            if rng.chance(15) {
                need -= 1 + rng.below(3) as i64;
            }
            let skip = fresh();
            let d = scratch(rng);
            let _ = writeln!(s, "r1 = r7\nr1 += {need}\nif r1 > r8 goto {skip}");
            if rng.chance(70) {
                let _ = writeln!(s, "r{d} = *({name} *)(r7 +{off})");
            } else {
                let _ = writeln!(s, "*({name} *)(r7 +{off}) = r{d}");
            }
            let _ = writeln!(s, "{skip}:");
        }
        // Map value access behind a null check (sometimes none), constant offset.
        4 | 5 => {
            let (name, size) = *rng.pick(&SIZES);
            let vsize = i64::from(maps.array_value.min(maps.hash_value));
            let mut off = rng.below(vsize as u64) as i64;
            off -= off % size;
            if rng.chance(10) {
                off += size;
            }
            let skip = fresh();
            if rng.chance(90) {
                let _ = writeln!(s, "if r9 == 0 goto {skip}");
            }
            let d = scratch(rng);
            if rng.chance(60) {
                let _ = writeln!(s, "r{d} = *({name} *)(r9 +{off})");
            } else {
                let _ = writeln!(s, "*({name} *)(r9 +{off}) = r{d}");
            }
            let _ = writeln!(s, "{skip}:");
        }
        // Variable offset into the map value, bounded by a mask or a branch.
        6 => {
            let skip = fresh();
            let i = scratch(rng);
            let _ = writeln!(s, "if r9 == 0 goto {skip}");
            if rng.chance(50) {
                let mask = *rng.pick(&[7u64, 15, 31, 63]);
                let _ = writeln!(s, "r{i} &= {mask}");
            } else {
                let bound = rng.below(48);
                let _ = writeln!(s, "if r{i} > {bound} goto {skip}");
            }
            let _ = writeln!(s, "r1 = r9\nr1 += r{i}\nr{} = *(u8 *)(r1 +0)", scratch(rng));
            let _ = writeln!(s, "{skip}:");
        }
        // Stack spill and fill, sometimes of a pointer, sometimes misaligned or unwritten.
        7 => {
            let (name, size) = *rng.pick(&SIZES);
            let mut off = 16 + rng.below(480) as i64;
            off -= off % size;
            let src = *rng.pick(&[0u64, 1, 2, 3, 7, 9]);
            if rng.chance(85) {
                let _ = writeln!(s, "*({name} *)(r10 -{off}) = r{src}");
            }
            let (name2, _) = if rng.chance(80) {
                (name, size)
            } else {
                *rng.pick(&SIZES)
            };
            let _ = writeln!(s, "r{} = *({name2} *)(r10 -{off})", scratch(rng));
        }
        // A forward branch over some scalar work.
        9 => {
            let skip = fresh();
            let (a, c) = (scratch(rng), *rng.pick(&CONDS));
            let w = if rng.chance(30) { "w" } else { "r" };
            let _ = writeln!(s, "if {w}{a} {c} {} goto {skip}", scalar_imm(rng) as i32);
            let _ = writeln!(s, "r{} += {}", scratch(rng), rng.below(9));
            let _ = writeln!(s, "{skip}:");
        }
        // Pointer arithmetic on the packet pointer, then a bounds-checked load.
        _ => {
            let skip = fresh();
            let i = scratch(rng);
            let mask = *rng.pick(&[3u64, 7, 15, 255]);
            let _ = writeln!(
                s,
                "r{i} &= {mask}\nr2 = r7\nr2 += r{i}\nr1 = r2\nr1 += 4\nif r1 > r8 goto {skip}\n\
                 r{} = *(u32 *)(r2 +0)\n{skip}:",
                scratch(rng)
            );
        }
    }
}

fn helper_call(rng: &mut Rng, maps: &GenMaps, s: &mut String) {
    match rng.below(3) {
        0 => s.push_str("call bpf_get_prandom_u32\n"),
        1 => s.push_str("call bpf_ktime_get_ns\n"),
        _ => {
            let _ = writeln!(
                s,
                "*(u64 *)(r10 -8) = {}\n*(u64 *)(r10 -24) = 1\n*(u64 *)(r10 -16) = 2\n\
                 r1 = map[id:{}]\nr2 = r10\nr2 += -8\nr3 = r10\nr3 += -{}\nr4 = 0\n\
                 call bpf_map_update_elem",
                rng.below(8),
                maps.hash_fd,
                if rng.chance(90) { 24 } else { 12 }
            );
        }
    }
}
