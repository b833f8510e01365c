//! Structure checks before path exploration: opcodes and `LD_IMM64`
//! shapes (`resolve_pseudo_ldimm64`), subprograms (`add_subprog_and_kfunc`,
//! `check_subprogs`) and the control-flow graph (`check_cfg`).

use structops_isa::{Insn, opcode as oc};

use crate::env::Privileges;
use crate::error::{E2BIG, EINVAL, EPERM, Reject};

/// `BPF_PSEUDO_CALL`.
const PSEUDO_CALL: u8 = 1;
/// `BPF_PSEUDO_KFUNC_CALL`.
const PSEUDO_KFUNC_CALL: u8 = 2;
/// `BPF_PSEUDO_FUNC`.
const PSEUDO_FUNC: u8 = 4;
/// The kernel's `BPF_MAX_SUBPROGS`.
const MAX_SUBPROGS: usize = 256;

/// What structure analysis learns about the program.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cfg {
    /// Subprogram start instructions, sorted, first is 0.
    pub subprogs: Vec<usize>,
    /// Instructions where states are compared (`mark_prune_point`).
    pub prune_point: Vec<bool>,
    /// Instructions that force a checkpoint (callback calls, `may_goto`).
    pub force_checkpoint: Vec<bool>,
}

impl Cfg {
    /// Index of the subprogram containing `pc`.
    pub fn subprog_of(&self, pc: usize) -> usize {
        match self.subprogs.binary_search(&pc) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }
}

fn is_ldimm64(insn: &Insn) -> bool {
    insn.code == oc::LD | oc::IMM | oc::DW
}

fn is_pseudo_call(insn: &Insn) -> bool {
    insn.code == oc::JMP | oc::CALL && insn.src_reg() == PSEUDO_CALL
}

fn is_pseudo_func(insn: &Insn) -> bool {
    is_ldimm64(insn) && insn.src_reg() == PSEUDO_FUNC
}

fn reject(errno: i32, message: impl Into<String>) -> Reject {
    Reject::new(errno, message)
}

/// Runs the structure checks in the kernel's order.
pub(crate) fn analyze(
    insns: &[Insn],
    privileges: Privileges,
    func_info: &[u32],
    log: &mut dyn FnMut(&str),
) -> Result<Cfg, Reject> {
    pre_scan(insns)?;
    let subprogs = add_subprogs(insns, privileges, func_info)?;
    check_subprogs(insns, &subprogs)?;
    let mut cfg = Cfg {
        subprogs,
        prune_point: vec![false; insns.len()],
        force_checkpoint: vec![false; insns.len()],
    };
    check_cfg(insns, privileges, &mut cfg, log)?;
    Ok(cfg)
}

/// The whole-program part of `resolve_pseudo_ldimm64`: `LDX` modes,
/// `LD_IMM64` shapes and unknown opcodes, in instruction order.
fn pre_scan(insns: &[Insn]) -> Result<(), Reject> {
    let mut i = 0;
    while i < insns.len() {
        let insn = &insns[i];
        let class = oc::class(insn.code);
        if class == oc::LDX {
            let mode = insn.code & 0xe0;
            if (mode != oc::MEM && mode != oc::MEMSX) || insn.imm != 0 {
                return Err(reject(EINVAL, "BPF_LDX uses reserved fields"));
            }
        }
        if is_ldimm64(insn) {
            let bad_tail = match insns.get(i + 1) {
                None => true,
                Some(n) => n.code != 0 || n.dst_reg() != 0 || n.src_reg() != 0 || n.off != 0,
            };
            if bad_tail {
                return Err(reject(EINVAL, "invalid bpf_ld_imm64 insn"));
            }
            let src = insn.src_reg();
            let second_imm = insns.get(i + 1).map_or(0, |n| n.imm);
            let ok = match src {
                0 | 3 => true,
                PSEUDO_FUNC => second_imm == 0,
                1 | 5 => second_imm == 0,
                2 | 6 => true,
                _ => false,
            };
            if !ok {
                return Err(reject(EINVAL, "unrecognized bpf_ld_imm64 insn"));
            }
            i += 2;
            continue;
        }
        if !opcode_known(insn.code) {
            return Err(reject(EINVAL, format!("unknown opcode {:02x}", insn.code)));
        }
        i += 1;
    }
    Ok(())
}

/// `bpf_opcode_in_insntable`: the opcodes the interpreter knows.
fn opcode_known(code: u8) -> bool {
    let class = oc::class(code);
    let op = code & 0xf0;
    let src = code & 0x08;
    let size = code & 0x18;
    let mode = code & 0xe0;
    match class {
        oc::ALU | oc::ALU64 => {
            let ok_op = matches!(
                op,
                0x00 | 0x10
                    | 0x20
                    | 0x30
                    | 0x40
                    | 0x50
                    | 0x60
                    | 0x70
                    | 0x80
                    | 0x90
                    | 0xa0
                    | 0xb0
                    | 0xc0
            );
            if op == 0xd0 {
                // END: ALU with TO_LE/TO_BE, ALU64 only with src 0 (bswap).
                return class == oc::ALU || src == 0;
            }
            if op == 0x80 {
                return src == 0;
            }
            ok_op
        }
        oc::JMP | oc::JMP32 => {
            match op {
                0x00 => src == 0,                     // JA
                0x80 => class == oc::JMP && src == 0, // CALL
                0x90 => class == oc::JMP && src == 0, // EXIT
                0xe0 => class == oc::JMP && src == 0, // JCOND
                0x10 | 0x20 | 0x30 | 0x40 | 0x50 | 0x60 | 0x70 | 0xa0 | 0xb0 | 0xc0 | 0xd0 => true,
                _ => false,
            }
        }
        oc::LD => (mode == oc::ABS || mode == oc::IND) && size != oc::DW,
        oc::LDX => (mode == oc::MEM) || (mode == oc::MEMSX && size != oc::DW),
        oc::ST => mode == oc::MEM,
        oc::STX => mode == oc::MEM || mode == oc::ATOMIC,
        _ => false,
    }
}

/// `add_subprog_and_kfunc`: the entry, every call and callback target.
fn add_subprogs(
    insns: &[Insn],
    privileges: Privileges,
    func_info: &[u32],
) -> Result<Vec<usize>, Reject> {
    let mut subs = vec![0usize];
    let len = insns.len() as i64;
    for (i, insn) in insns.iter().enumerate() {
        let kfunc = insn.code == oc::JMP | oc::CALL && insn.src_reg() == PSEUDO_KFUNC_CALL;
        if !is_pseudo_call(insn) && !is_pseudo_func(insn) && !kfunc {
            continue;
        }
        if !privileges.bpf_capable {
            return Err(reject(
                EPERM,
                "loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN",
            ));
        }
        if kfunc {
            continue;
        }
        let target = i as i64 + i64::from(insn.imm) + 1;
        if target < 0 || target >= len {
            return Err(reject(
                EINVAL,
                format!("function at insn {target} is not in the program"),
            ));
        }
        let t = target as usize;
        if let Err(pos) = subs.binary_search(&t) {
            if subs.len() >= MAX_SUBPROGS {
                return Err(reject(E2BIG, "too many subprograms"));
            }
            subs.insert(pos, t);
        }
    }
    if !func_info.is_empty() {
        // check_btf_func: func_info must name exactly the subprograms.
        let starts: Vec<usize> = func_info.iter().map(|&x| x as usize).collect();
        if starts.len() != subs.len() {
            return Err(reject(
                EINVAL,
                "number of funcs in func_info doesn't match number of subprogs",
            ));
        }
        if starts.iter().zip(subs.iter()).any(|(a, b)| a != b) {
            return Err(reject(
                EINVAL,
                "func_info BTF section doesn't match subprog layout in BPF program",
            ));
        }
    }
    Ok(subs)
}

/// `check_subprogs`: jumps stay inside their subprogram, and each one ends
/// in `exit` or an unconditional jump.
fn check_subprogs(insns: &[Insn], subs: &[usize]) -> Result<(), Reject> {
    let mut cur = 0usize;
    let mut start = 0usize;
    let mut end = subs.get(1).copied().unwrap_or(insns.len());
    for (i, insn) in insns.iter().enumerate() {
        let code = insn.code;
        let class = oc::class(code);
        let op = code & 0xf0;
        if (class == oc::JMP || class == oc::JMP32) && op != oc::EXIT && op != oc::CALL {
            let off = if code == oc::JMP32 | oc::JA {
                i as i64 + i64::from(insn.imm) + 1
            } else {
                i as i64 + i64::from(insn.off) + 1
            };
            if off < start as i64 || off >= end as i64 {
                return Err(reject(
                    EINVAL,
                    format!("jump out of range from insn {i} to {off}"),
                ));
            }
        }
        if i + 1 == end {
            if code != oc::JMP | oc::EXIT && code != oc::JMP32 | oc::JA && code != oc::JMP | oc::JA
            {
                return Err(reject(EINVAL, "last insn is not an exit or jmp"));
            }
            start = end;
            cur += 1;
            end = subs.get(cur + 1).copied().unwrap_or(insns.len());
        }
    }
    Ok(())
}

const DISCOVERED: u8 = 0x10;
const EXPLORED: u8 = 0x20;
const FALLTHROUGH: u8 = 1;
const BRANCH: u8 = 2;

enum Visit {
    Done,
    Keep,
}

/// `check_cfg`: depth-first walk of the control-flow graph. Back-edges
/// are loops, allowed only for `CAP_BPF` (then the path walk bounds them);
/// every instruction must be reachable.
fn check_cfg(
    insns: &[Insn],
    privileges: Privileges,
    cfg: &mut Cfg,
    log: &mut dyn FnMut(&str),
) -> Result<(), Reject> {
    let n = insns.len();
    let mut state = vec![0u8; n];
    let mut stack: Vec<usize> = Vec::with_capacity(16);
    if n == 0 {
        return Ok(());
    }
    state[0] = DISCOVERED;
    stack.push(0);
    while let Some(&t) = stack.last() {
        match visit(t, insns, privileges, cfg, &mut state, &mut stack, log)? {
            Visit::Done => {
                state[t] = EXPLORED;
                stack.pop();
            }
            Visit::Keep => {}
        }
    }
    let mut i = 0;
    while i < n {
        if state[i] != EXPLORED {
            return Err(reject(EINVAL, format!("unreachable insn {i}")));
        }
        if is_ldimm64(&insns[i]) {
            if state.get(i + 1).copied().unwrap_or(0) != 0 {
                return Err(reject(
                    EINVAL,
                    format!("jump into the middle of ldimm64 insn {i}"),
                ));
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "the walk's state travels as arguments, as in the kernel's push_insn"
)]
fn push(
    t: usize,
    w: i64,
    e: u8,
    insns: &[Insn],
    privileges: Privileges,
    cfg: &mut Cfg,
    state: &mut [u8],
    stack: &mut Vec<usize>,
    log: &mut dyn FnMut(&str),
) -> Result<Option<Visit>, Reject> {
    if e == FALLTHROUGH && state[t] >= DISCOVERED | FALLTHROUGH {
        return Ok(Some(Visit::Done));
    }
    if e == BRANCH && state[t] >= DISCOVERED | BRANCH {
        return Ok(Some(Visit::Done));
    }
    if w < 0 || w >= insns.len() as i64 {
        log(&format!("{t}: "));
        return Err(reject(
            EINVAL,
            format!("jump out of range from insn {t} to {w}"),
        ));
    }
    let w = w as usize;
    if e == BRANCH {
        cfg.prune_point[w] = true;
    }
    if state[w] == 0 {
        state[t] = DISCOVERED | e;
        state[w] = DISCOVERED;
        stack.push(w);
        return Ok(Some(Visit::Keep));
    } else if state[w] & 0xf0 == DISCOVERED {
        if privileges.bpf_capable {
            return Ok(Some(Visit::Done));
        }
        return Err(reject(EINVAL, format!("back-edge from insn {t} to {w}")));
    } else if state[w] == EXPLORED {
        state[t] = DISCOVERED | e;
    }
    Ok(None)
}

fn visit(
    t: usize,
    insns: &[Insn],
    privileges: Privileges,
    cfg: &mut Cfg,
    state: &mut [u8],
    stack: &mut Vec<usize>,
    log: &mut dyn FnMut(&str),
) -> Result<Visit, Reject> {
    let insn = &insns[t];
    let ti = t as i64;
    macro_rules! edge {
        ($w:expr, $e:expr) => {
            match push(t, $w, $e, insns, privileges, cfg, state, stack, log)? {
                Some(Visit::Keep) => return Ok(Visit::Keep),
                Some(Visit::Done) | None => {}
            }
        };
    }
    let n = insns.len();
    let mark = |cfg: &mut Cfg, w: i64| {
        if w >= 0 && (w as usize) < n {
            cfg.prune_point[w as usize] = true;
        }
    };
    if is_pseudo_func(insn) {
        edge!(ti + 2, FALLTHROUGH);
        mark(cfg, ti + 2);
        cfg.prune_point[t] = true;
        edge!(ti + i64::from(insn.imm) + 1, BRANCH);
        return Ok(Visit::Done);
    }
    let class = oc::class(insn.code);
    if class != oc::JMP && class != oc::JMP32 {
        let sz = if is_ldimm64(insn) { 2 } else { 1 };
        edge!(ti + sz, FALLTHROUGH);
        return Ok(Visit::Done);
    }
    match insn.code & 0xf0 {
        op if op == oc::EXIT => Ok(Visit::Done),
        op if op == oc::CALL => {
            if insn.src_reg() == 0 && is_callback_helper(insn.imm) {
                cfg.force_checkpoint[t] = true;
                cfg.prune_point[t] = true;
            }
            edge!(ti + 1, FALLTHROUGH);
            mark(cfg, ti + 1);
            if is_pseudo_call(insn) {
                cfg.prune_point[t] = true;
                edge!(ti + i64::from(insn.imm) + 1, BRANCH);
            }
            Ok(Visit::Done)
        }
        op if op == oc::JA => {
            let off = if class == oc::JMP {
                i64::from(insn.off)
            } else {
                i64::from(insn.imm)
            };
            edge!(ti + off + 1, FALLTHROUGH);
            mark(cfg, ti + off + 1);
            Ok(Visit::Done)
        }
        op => {
            cfg.prune_point[t] = true;
            if op == 0xe0 {
                cfg.force_checkpoint[t] = true;
            }
            edge!(ti + 1, FALLTHROUGH);
            edge!(ti + i64::from(insn.off) + 1, BRANCH);
            Ok(Visit::Done)
        }
    }
}

/// Helpers that call a callback synchronously (`is_sync_callback_calling_function`).
pub(crate) fn is_callback_helper(id: i32) -> bool {
    matches!(id, 164 | 181 | 196 | 198 | 208)
}
