//! The path walk (`do_check`): one abstract state per path, branches
//! pushed on a stack, states remembered at prune points and compared
//! (`is_state_visited`), the instruction limit.

use std::collections::HashMap;
use std::fmt::Write as _;

use structops_isa::{
    AluOp, Bits, CallTarget, Cond, DecodeError, Imm64, Insn, Op, Source, Width, decode_at,
    disasm::Symbolizer, format_op,
};

use crate::alu;
use crate::branch;
use crate::cfg::{self, Cfg};
use crate::env::{LogOptions, MapInfo, MapRef, ProgInfo, ReturnRule, VerifierEnv};
use crate::error::{E2BIG, EACCES, EBADF, EINVAL, Reject, VerifyError, eacces, einval};
use crate::liveness::Loc;
use crate::prune::{Exact, iter_active_depths_differ, states_equal, states_maybe_looping};
use crate::scalar::ScalarValue;
use crate::state::{Frame, HistEntry, Reg, RegFlags, RegType, State, write_reg};

/// `BPF_COMPLEXITY_LIMIT_INSNS`.
pub const COMPLEXITY_LIMIT_INSNS: u64 = 1_000_000;
/// `BPF_COMPLEXITY_LIMIT_JMP_SEQ`: pending branches.
const COMPLEXITY_LIMIT_JMP_SEQ: usize = 8192;
/// `MAX_BPF_STACK`.
pub const MAX_BPF_STACK: i64 = 512;
/// `MAX_CALL_FRAMES`.
pub const MAX_CALL_FRAMES: usize = 8;
/// `BPF_MAX_VAR_OFF`.
pub(crate) const MAX_VAR_OFF: i64 = 1 << 29;

pub(crate) type Res<T> = Result<T, Reject>;

/// Verification statistics, as the kernel's final log line prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instructions processed over all paths.
    pub insn_processed: u64,
    /// Most states kept at one instruction.
    pub max_states_per_insn: u32,
    /// States remembered in total.
    pub total_states: u32,
    /// States alive at the end (the kernel's `peak_states` counter).
    pub peak_states: u32,
    /// Longest liveness walk (0: liveness is not tracked).
    pub mark_read: u32,
}

impl Stats {
    /// The kernel's line: `processed N insns (limit 1000000) ...`.
    pub fn line(&self) -> String {
        format!(
            "processed {} insns (limit {}) max_states_per_insn {} total_states {} peak_states {} mark_read {}",
            self.insn_processed,
            COMPLEXITY_LIMIT_INSNS,
            self.max_states_per_insn,
            self.total_states,
            self.peak_states,
            self.mark_read
        )
    }
}

/// A remembered state at a prune point.
pub(crate) struct Stored {
    pub state: State,
    pub insn: usize,
    pub parent: Option<usize>,
    branches: u32,
    hit: u32,
    miss: u32,
    /// Some path below it was pruned against a state whose exploration
    /// was not finished (a loop of iterator, callback or `may_goto`
    /// iterations), so its liveness and precision marks may be
    /// incomplete: it is only compared with [`Exact::RangeWithin`].
    tainted: Option<usize>,
}

/// Instructions where a loop may converge against an unfinished state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopPoint {
    MayGoto,
    Callback,
    /// An open-coded iterator's `next` call (`is_iter_next_insn`).
    IterNext,
}

/// `maybe_widen_reg`.
fn widen(old: &Reg, cur: &mut Reg) {
    if old.ty != RegType::Scalar || cur.ty != RegType::Scalar {
        return;
    }
    if old.precise || cur.precise {
        return;
    }
    if old.v == cur.v && old.id == cur.id {
        return;
    }
    *cur = Reg::unknown();
}

/// A pending branch (`bpf_verifier_stack_elem`).
struct Pending {
    state: State,
    insn: usize,
    prev_insn: usize,
    parent: Option<usize>,
    log_pos: usize,
}

/// Per-instruction facts gathered on every path (`bpf_insn_aux_data`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InsnAux {
    /// Pointer type a load/store went through (`ptr_type`), to reject an
    /// instruction used with different pointer kinds.
    pub ptr_type: Option<RegType>,
    /// Reached by some path.
    pub seen: bool,
    /// The context access checked here (the same on every path: a context
    /// pointer has no offset of its own), for `convert_ctx_access`.
    pub ctx: Option<crate::env::CtxAccess>,
    /// A division or modulo by a register: what every visit proved about
    /// the divisor, `None` before the first visit.
    pub divisor: Option<crate::facts::DivisorFact>,
    /// A load through an untrusted `PTR_TO_BTF_ID` on some path: run it as
    /// a probe ([`crate::InsnFacts::probe_mem`]).
    pub probe_mem: bool,
}

/// Helper names for the disassembler, from the environment.
struct Names<'a>(&'a dyn VerifierEnv);

impl Symbolizer for Names<'_> {
    fn helper(&self, _pc: usize, id: i32) -> Option<String> {
        self.0.helper_name(id)
    }
}

pub(crate) struct Verifier<'a> {
    pub insns: &'a [Insn],
    pub ops: Vec<Option<Result<Op, DecodeError>>>,
    pub env: &'a dyn VerifierEnv,
    pub info: &'a ProgInfo,
    pub log_level: u32,
    /// `BPF_LOG_STATS`: the error line and the stats line even at level 0.
    log_stats: bool,
    pub log: String,
    pub maps: Vec<MapInfo>,
    map_index: HashMap<MapRef, u32>,
    /// Loads through `CONST_PTR_TO_MAP` by instruction (see
    /// [`crate::MapPtrLoad`]).
    pub map_ptr_loads: std::collections::BTreeMap<usize, crate::env::MapPtrLoad>,
    /// Maps of maps (index in `maps`) to their inner-map template's index.
    pub inner_maps: HashMap<u32, u32>,
    pub cfg: Cfg,
    pub cur: State,
    pub insn_idx: usize,
    prev_insn_idx: usize,
    pending: Vec<Pending>,
    pub(crate) stored: Vec<Stored>,
    /// Bytes of the states in `stored` ([`State::approx_bytes`]).
    stored_bytes: u64,
    /// [`crate::Limits::state_memory`].
    state_memory_limit: u64,
    /// [`crate::Limits::log_size`].
    log_limit: u64,
    /// Registers live before each instruction ([`crate::live_regs`]).
    live_regs: Vec<u16>,
    /// Calls of an iterator's `next` kfunc (`insn_aux_data.is_iter_next`).
    pub(crate) iter_next: Vec<bool>,
    explored: HashMap<usize, Vec<usize>>,
    /// Parent of the current state among `stored`.
    pub(crate) cur_parent: Option<usize>,
    /// Last frame identity handed out ([`Frame::uid`]).
    pub(crate) frame_uid: u32,
    /// Longest walk of [`Verifier::mark_read`] (the kernel's `mark_read` stat).
    pub(crate) longest_mark_read_walk: u32,
    /// The current instruction was reached by a jump (or a popped branch):
    /// it gets an instruction history entry.
    jumped: bool,
    /// Instruction executed before the current one.
    hist_prev: usize,
    /// The current instruction already has a history entry (the last one).
    hist_cur: bool,
    pub id_gen: u32,
    pub stats: Stats,
    jmps_processed: u64,
    prev_jmps_processed: u64,
    prev_insn_processed: u64,
    pub aux: Vec<InsnAux>,
    /// Deepest stack use per subprogram.
    pub stack_depth: Vec<usize>,
    /// Subprograms each subprogram calls (for the combined stack check).
    pub callees: Vec<Vec<usize>>,
    /// Whether some path was pruned or exited: the `do_print_state` flag.
    print_state: bool,
    /// What to print after the instruction at log level 2.
    scratch: Scratch,
    /// The struct_ops member this program implements, once checked.
    pub struct_ops: Option<crate::btf_ptr::StructOpsCtx<'a>>,
    /// Where paths were pruned against a state whose scalars did not all
    /// contain the current ones (a match through imprecise registers): the
    /// pruned continuation was explored with other values, so per-visit
    /// facts ([`InsnAux::divisor`]) of everything reachable from these
    /// instructions (and from the frames' call sites) cannot be trusted.
    pub fact_taint: Vec<usize>,
}

impl<'a> Verifier<'a> {
    pub fn new(
        insns: &'a [Insn],
        env: &'a dyn VerifierEnv,
        info: &'a ProgInfo,
        log: LogOptions,
    ) -> Verifier<'a> {
        let mut ops = Vec::with_capacity(insns.len());
        let mut pc = 0;
        while pc < insns.len() {
            match decode_at(insns, pc) {
                Ok((op, n)) => {
                    ops.push(Some(Ok(op)));
                    if n == 2 {
                        ops.push(None);
                    }
                    pc += n;
                }
                Err(e) => {
                    ops.push(Some(Err(e)));
                    pc += 1;
                }
            }
        }
        Verifier {
            insns,
            ops,
            env,
            info,
            log_level: log.level,
            log_stats: log.stats,
            log: String::new(),
            maps: Vec::new(),
            map_index: HashMap::new(),
            map_ptr_loads: std::collections::BTreeMap::new(),
            inner_maps: HashMap::new(),
            cfg: Cfg::default(),
            cur: State {
                frames: vec![Frame::new(0, 0, 0)],
                ..State::default()
            },
            cur_parent: None,
            live_regs: Vec::new(),
            iter_next: Vec::new(),
            frame_uid: 0,
            longest_mark_read_walk: 0,
            jumped: false,
            hist_prev: 0,
            hist_cur: false,
            insn_idx: 0,
            prev_insn_idx: 0,
            pending: Vec::new(),
            stored: Vec::new(),
            stored_bytes: 0,
            state_memory_limit: u64::MAX,
            log_limit: u64::MAX,
            explored: HashMap::new(),
            id_gen: 0,
            stats: Stats::default(),
            jmps_processed: 0,
            prev_jmps_processed: 0,
            prev_insn_processed: 0,
            aux: vec![InsnAux::default(); insns.len()],
            stack_depth: Vec::new(),
            callees: Vec::new(),
            print_state: false,
            struct_ops: None,
            scratch: Scratch::default(),
            fact_taint: Vec::new(),
        }
    }

    pub fn verbose(&mut self, s: &str) {
        if self.log_level > 0 {
            self.log.push_str(s);
        }
    }

    /// Applies `limits` (before [`Verifier::run`]).
    pub fn set_limits(&mut self, limits: &crate::Limits) {
        self.state_memory_limit = limits.state_memory;
        self.log_limit = limits.log_size;
    }

    pub fn privileges(&self) -> crate::env::Privileges {
        self.info.privileges
    }

    /// Runs every check; on failure the error carries the log.
    pub fn run(&mut self) -> Result<(), VerifyError> {
        let res = self.run_inner();
        res.map_err(|r| {
            let mut log = std::mem::take(&mut self.log);
            if self.log_level > 0 || self.log_stats {
                let _ = writeln!(log, "{}", r.message);
                let _ = writeln!(log, "{}", self.stats.line());
            }
            VerifyError {
                errno: r.errno,
                pc: self.insn_idx,
                message: r.message,
                log,
            }
        })
    }

    fn run_inner(&mut self) -> Res<()> {
        if self.insns.is_empty() {
            return einval!("empty program");
        }
        self.check_kfunc_decls()?;
        self.resolve_maps()?;
        let mut lines = String::new();
        let cfg = cfg::analyze(
            self.insns,
            self.privileges(),
            &self.info.func_info,
            &mut |s| lines.push_str(s),
        );
        self.verbose(&lines);
        self.cfg = cfg?;
        self.mark_iter_next_calls();
        self.check_struct_ops()?;
        let ops: Vec<Option<Op>> = self
            .ops
            .iter()
            .map(|o| o.as_ref().and_then(|r| r.as_ref().ok().copied()))
            .collect();
        self.live_regs = crate::live_regs::compute(&ops);
        let n = self.cfg.subprogs.len();
        self.stack_depth = vec![0; n];
        self.callees = vec![Vec::new(); n];
        if self.log_level >= 2 {
            let subs = self.cfg.subprogs.clone();
            for (i, s) in subs.iter().enumerate() {
                self.verbose(&format!("func#{i} @{s}\n"));
            }
        }
        self.do_check()?;
        self.check_max_stack_depth()?;
        if self.log_level > 0 || self.log_stats {
            let line = self.stats.line();
            let _ = writeln!(self.log, "{line}");
        }
        Ok(())
    }

    /// The map references of every `LD_IMM64` (`resolve_pseudo_ldimm64`).
    fn resolve_maps(&mut self) -> Res<()> {
        for i in 0..self.ops.len() {
            let Some(Ok(Op::LdImm64 { imm, .. })) = self.ops[i] else {
                continue;
            };
            let (r, value_off) = match imm {
                Imm64::MapFd { fd } => (MapRef::Fd(fd), None),
                Imm64::MapValue { fd, offset } => (MapRef::Fd(fd), Some(offset)),
                Imm64::MapIdx { idx } => (MapRef::Idx(idx), None),
                Imm64::MapIdxValue { idx, offset } => (MapRef::Idx(idx), Some(offset)),
                _ => continue,
            };
            let idx = self.map_idx(r)?;
            if let Some(off) = value_off {
                let map = &self.maps[idx as usize];
                if i64::from(off) >= MAX_VAR_OFF {
                    return einval!("direct value offset of {off} is not allowed");
                }
                if !map.direct_value {
                    return einval!("no direct value access support for this map type");
                }
                if off >= map.value_size {
                    return Err(Reject::new(
                        EINVAL,
                        format!(
                            "invalid access to map value pointer, value_size={} off={}",
                            map.value_size, off
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The reference a map of the verifier's table was named by; `None`
    /// for inner-map templates (what a map-of-maps lookup points to).
    pub fn map_ref_of(&self, idx: u32) -> Option<MapRef> {
        self.map_index
            .iter()
            .find(|&(_, &i)| i == idx)
            .map(|(&r, _)| r)
    }

    pub fn map_idx(&mut self, r: MapRef) -> Res<u32> {
        if let Some(&i) = self.map_index.get(&r) {
            return Ok(i);
        }
        let Some(info) = self.env.map(r) else {
            return Err(match r {
                MapRef::Fd(fd) => {
                    Reject::new(EBADF, format!("fd {fd} is not pointing to valid bpf_map"))
                }
                MapRef::Idx(idx) => Reject::new(EINVAL, format!("fd_idx {idx} is not valid")),
            });
        };
        let i = self.maps.len() as u32;
        self.maps.push(info);
        self.map_index.insert(r, i);
        if let Some(inner) = self.env.inner_map(r) {
            let j = self.maps.len() as u32;
            self.maps.push(inner);
            self.inner_maps.insert(i, j);
        }
        Ok(i)
    }

    fn map_desc(&self) -> impl Fn(u32) -> Option<(String, u32, u32)> + '_ {
        |i| {
            self.maps
                .get(i as usize)
                .map(|m| (m.name.clone(), m.key_size, m.value_size))
        }
    }

    /// `print_verifier_state` of the current frame, all registers.
    pub fn state_text(&self) -> String {
        self.state_text_of(None)
    }

    /// `print_verifier_state`: all registers and slots, or (`only`) just
    /// the scratched ones (`print_all == false`).
    fn state_text_of(&self, only: Option<Scratch>) -> String {
        let f = self.cur.cur();
        let mut out = String::new();
        if f.frameno != 0 {
            let _ = write!(out, " frame{}:", f.frameno);
        }
        let md = self.map_desc();
        // btf_type_name of a PTR_TO_BTF_ID's target.
        let bn = |id: u32| -> String {
            self.env
                .host_btf()
                .and_then(|b| b.ty(id).ok().and_then(|t| b.name(t.name_off).ok()))
                .unwrap_or("")
                .to_owned()
        };
        for (i, r) in f.regs.iter().enumerate() {
            if r.ty == RegType::NotInit || only.is_some_and(|m| m.regs & (1 << i) == 0) {
                continue;
            }
            let _ = write!(out, " R{i}=");
            write_reg(&mut out, f.frameno, r, &md, &bn);
        }
        for (spi, slot) in f.stack.iter().enumerate() {
            if only.is_some_and(|m| spi >= 64 || m.stack & (1 << spi) == 0) {
                continue;
            }
            if slot
                .slot_type
                .iter()
                .all(|t| *t == crate::state::SlotType::Invalid)
            {
                continue;
            }
            let mut types: String = slot.slot_type.iter().map(|t| t.letter()).collect();
            if slot.is_iter() {
                // Only an iterator's first slot carries its reference.
                let it = &slot.iter;
                if it.ref_obj_id != 0 {
                    let _ = write!(
                        out,
                        " fp{}=iter_{}(ref_id={},state={},depth={})",
                        -8 * (spi as i64 + 1),
                        self.iter_type_str(it.btf_id),
                        it.ref_obj_id,
                        it.phase.name(),
                        it.depth
                    );
                }
                continue;
            }
            let _ = write!(out, " fp{}=", -8 * (spi as i64 + 1));
            if slot.is_spill() {
                let first = slot
                    .slot_type
                    .iter()
                    .position(|t| *t == crate::state::SlotType::Spill)
                    .unwrap_or(0);
                types.truncate(first);
                out.push_str(&types);
                write_reg(&mut out, f.frameno, &slot.spilled, &md, &bn);
            } else {
                out.push_str(&types);
            }
        }
        if let Some(first) = self.cur.refs.first() {
            let _ = write!(out, " refs={}", first.id);
            for r in self.cur.refs.iter().skip(1) {
                let _ = write!(out, ",{}", r.id);
            }
        }
        if f.callback.is_some() {
            out.push_str(" cb");
        }
        out
    }

    /// Sets up the entry state (`init_func_state`, `r1 = ctx`).
    fn init_state(&mut self) {
        let mut f = Frame::new(0, 0, 0);
        f.regs[1] = Reg::ptr(RegType::Ctx);
        self.frame_uid += 1;
        f.uid = self.frame_uid;
        self.cur = State {
            frames: vec![f],
            ..State::default()
        };
        self.acquire_struct_ops_refs();
    }

    pub fn op_at(&self, pc: usize) -> Res<Op> {
        match self.ops.get(pc) {
            Some(Some(Ok(op))) => Ok(*op),
            Some(Some(Err(e))) => Err(decode_reject(e, self.insns.get(pc))),
            _ => Err(Reject::new(
                crate::error::EFAULT,
                format!("invalid insn idx {pc} insn_cnt {}", self.insns.len()),
            )),
        }
    }

    fn do_check(&mut self) -> Res<()> {
        self.init_state();
        self.scratch.all();
        // At level 2 the entry state is print_insn_state's first line.
        if self.log_level == 1 {
            let s = self.state_text();
            self.verbose(&format!("0:{s}\n"));
        }
        loop {
            let pc = self.insn_idx;
            if pc >= self.insns.len() {
                return Err(Reject::new(
                    crate::error::EFAULT,
                    format!("invalid insn idx {pc} insn_cnt {}", self.insns.len()),
                ));
            }
            self.stats.insn_processed += 1;
            // The log grows by at most a few lines per instruction: checked here, it
            // stays within the limit plus one instruction's lines.
            if self.log.len() as u64 > self.log_limit {
                return Err(Reject::new(
                    crate::error::ENOSPC,
                    format!(
                        "verifier log over the limit of {} bytes at insn {pc}",
                        self.log_limit
                    ),
                ));
            }
            if self.stats.insn_processed > COMPLEXITY_LIMIT_INSNS {
                return Err(Reject::new(
                    E2BIG,
                    format!(
                        "BPF program is too large. Processed {} insn",
                        self.stats.insn_processed
                    ),
                ));
            }
            if self.cfg.prune_point[pc] && self.is_state_visited(pc)? {
                if self.log_level > 0 {
                    if self.print_state {
                        let prev = self.prev_insn_idx;
                        self.verbose(&format!("\nfrom {prev} to {pc}: safe\n"));
                    } else {
                        self.verbose(&format!("{pc}: safe\n"));
                    }
                }
                if !self.end_path()? {
                    return Ok(());
                }
                continue;
            }
            if self.log_level >= 2 && self.print_state {
                let prev = self.prev_insn_idx;
                let s = self.state_text();
                self.verbose(&format!("\nfrom {prev} to {pc}:{s}\n"));
                self.print_state = false;
            }
            let op = self.op_at(pc)?;
            if self.log_level >= 2 {
                self.print_insn_state(pc);
            }
            if self.log_level > 0 {
                let text = format_op(&op, pc, &Names(self.env));
                let start = self.log.len();
                self.verbose(&format!("{pc}: {text}\n"));
                self.scratch.line = Some((self.log.len(), self.log.len() - start));
            }
            let before = (self.log_level >= 2).then(|| self.scratch_before(&op));
            self.aux[pc].seen = true;
            self.hist_prev = self.prev_insn_idx;
            self.hist_cur = false;
            if self.jumped {
                self.push_hist();
            }
            self.prev_insn_idx = pc;
            let flow = self.step(pc, op)?;
            if let Some(before) = before {
                self.scratch_after(&op, before);
                if matches!(op, Op::Jmp { .. }) && matches!(flow, Flow::Next(_)) {
                    // check_cond_jmp_op prints this branch's state itself.
                    self.print_insn_state(pc);
                }
            }
            match flow {
                Flow::Next(n) => {
                    let len = if matches!(op, Op::LdImm64 { .. }) {
                        2
                    } else {
                        1
                    };
                    self.jumped = n != pc + len;
                    self.insn_idx = n;
                }
                Flow::EndPath => {
                    if !self.end_path()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Ends the current path: update branch counts, pop the next pending
    /// branch. `false` when nothing is left.
    fn end_path(&mut self) -> Res<bool> {
        // process_bpf_exit: mark_verifier_state_scratched.
        self.scratch.all();
        self.update_branch_counts(self.cur_parent);
        let Some(p) = self.pending.pop() else {
            return Ok(false);
        };
        if self.log_level == 1 {
            self.log.truncate(p.log_pos);
        }
        self.cur = p.state;
        self.insn_idx = p.insn;
        self.prev_insn_idx = p.prev_insn;
        self.cur_parent = p.parent;
        self.print_state = true;
        self.jumped = true;
        Ok(true)
    }

    fn update_branch_counts(&mut self, mut st: Option<usize>) {
        while let Some(i) = st {
            let Some(s) = self.stored.get_mut(i) else {
                break;
            };
            s.branches = s.branches.saturating_sub(1);
            if s.branches > 0 {
                break;
            }
            st = s.parent;
        }
    }

    /// `push_stack`: explore `state` at `insn` later.
    pub fn push_branch(&mut self, state: State, insn: usize, prev_insn: usize) -> Res<()> {
        if let Some(p) = self.cur_parent
            && let Some(s) = self.stored.get_mut(p)
        {
            s.branches += 1;
        }
        self.pending.push(Pending {
            state,
            insn,
            prev_insn,
            parent: self.cur_parent,
            log_pos: self.log.len(),
        });
        if self.pending.len() > COMPLEXITY_LIMIT_JMP_SEQ {
            return Err(Reject::new(
                E2BIG,
                format!(
                    "The sequence of {} jumps is too complex.",
                    self.pending.len()
                ),
            ));
        }
        Ok(())
    }

    /// Whether a state at `pc` may loop back to an unfinished state there
    /// and still converge: open-coded iterator `next` calls, `may_goto`,
    /// and callback-calling helpers.
    fn loop_point(&self, pc: usize) -> Option<LoopPoint> {
        if self.iter_next.get(pc).copied().unwrap_or(false) {
            return Some(LoopPoint::IterNext);
        }
        match self.ops.get(pc) {
            Some(Some(Ok(Op::MayGoto { .. }))) => Some(LoopPoint::MayGoto),
            Some(Some(Ok(Op::Call(CallTarget::Helper { id }))))
                if crate::cfg::is_callback_helper(*id) =>
            {
                Some(LoopPoint::Callback)
            }
            _ => None,
        }
    }

    /// `is_state_visited`: `true` when the current state is covered by a
    /// fully explored one at `pc` (prune), otherwise maybe remember it.
    fn is_state_visited(&mut self, pc: usize) -> Res<bool> {
        let force_new = self.cfg.force_checkpoint[pc] || self.cur.hist.len() > 40;
        let mut add_new = force_new
            || (self.jmps_processed - self.prev_jmps_processed >= 2
                && self.stats.insn_processed - self.prev_insn_processed >= 8);
        let loop_point = self.loop_point(pc);
        let privs = self.privileges();
        let live = self.static_live_masks(pc);
        let list = self.explored.get(&pc).cloned().unwrap_or_default();
        let mut keep = Vec::with_capacity(list.len());
        let mut states_cnt = 0u32;
        let mut hit = None;
        for (pos, &si) in list.iter().enumerate() {
            states_cnt += 1;
            let in_progress = self.stored[si].branches > 0;
            if in_progress {
                let old = &self.stored[si].state;
                let converged = match loop_point {
                    Some(LoopPoint::IterNext) => {
                        states_equal(old, &self.cur, &live, Exact::RangeWithin, privs)
                            && self.iter_arg_active()
                    }
                    Some(LoopPoint::MayGoto) => {
                        old.may_goto_depth != self.cur.may_goto_depth
                            && states_equal(old, &self.cur, &live, Exact::RangeWithin, privs)
                    }
                    Some(LoopPoint::Callback) => {
                        states_equal(old, &self.cur, &live, Exact::RangeWithin, privs)
                    }
                    None => false,
                };
                if converged {
                    hit = Some(si);
                    keep.extend_from_slice(&list[pos..]);
                    break;
                }
                let skip_inf =
                    matches!(loop_point, Some(LoopPoint::Callback | LoopPoint::IterNext));
                if !skip_inf
                    && states_maybe_looping(old, &self.cur)
                    && old.may_goto_depth == self.cur.may_goto_depth
                    && old.callback_unroll_depth == self.cur.callback_unroll_depth
                    && states_equal(old, &self.cur, &live, Exact::Equal, privs)
                    && !iter_active_depths_differ(old, &self.cur)
                {
                    return einval!("infinite loop detected at insn {pc}");
                }
                if !force_new
                    && self.jmps_processed - self.prev_jmps_processed < 20
                    && self.stats.insn_processed - self.prev_insn_processed < 100
                {
                    add_new = false;
                }
            } else {
                let mode = if self.stored[si].tainted.is_some() {
                    Exact::RangeWithin
                } else {
                    Exact::Marks
                };
                if states_equal(&self.stored[si].state, &self.cur, &live, mode, privs) {
                    hit = Some(si);
                    keep.extend_from_slice(&list[pos..]);
                    break;
                }
            }
            if add_new {
                self.stored[si].miss += 1;
            }
            let n = if force_new && self.stored[si].branches > 0 {
                64
            } else {
                3
            };
            let s = &self.stored[si];
            if s.miss > s.hit * n + n {
                self.stats.peak_states = self.stats.peak_states.saturating_sub(1);
                continue;
            }
            keep.push(si);
        }
        self.explored.insert(pc, keep);
        if self.stats.max_states_per_insn < states_cnt {
            self.stats.max_states_per_insn = states_cnt;
        }
        if let Some(si) = hit {
            if !states_equal(
                &self.stored[si].state,
                &self.cur,
                &live,
                Exact::RangeWithin,
                privs,
            ) {
                self.fact_taint.push(pc);
                self.fact_taint
                    .extend(self.cur.frames.iter().skip(1).map(|f| f.callsite));
            }
            self.stored[si].hit += 1;
            if self.jumped {
                self.hist_prev = self.prev_insn_idx;
                self.hist_cur = false;
                self.push_hist();
            }
            // Whatever the continuation from the old state reads or needs
            // precisely, this path reads and needs too.
            self.propagate_liveness(si);
            self.propagate_precision(si);
            let head = if self.stored[si].branches > 0 {
                Some(si)
            } else {
                self.stored[si].tainted
            };
            if let Some(h) = head {
                self.taint_ancestors(h);
            }
            return Ok(true);
        }
        if !add_new {
            return Ok(false);
        }
        // Remembered states are kept until the end of the load, so their memory is
        // bounded by the limit here rather than by the processed-insn limit alone.
        self.stored_bytes = self.stored_bytes.saturating_add(self.cur.approx_bytes());
        if self.stored_bytes > self.state_memory_limit {
            return Err(Reject::new(
                crate::error::ENOMEM,
                format!(
                    "verifier state memory limit of {} bytes reached after {} states",
                    self.state_memory_limit, self.stats.total_states
                ),
            ));
        }
        self.stats.total_states += 1;
        self.stats.peak_states += 1;
        self.prev_jmps_processed = self.jmps_processed;
        self.prev_insn_processed = self.stats.insn_processed;
        self.cur.last_insn = self.prev_insn_idx;
        let idx = self.stored.len();
        self.stored.push(Stored {
            state: self.cur.clone(),
            insn: pc,
            parent: self.cur_parent,
            branches: 1,
            hit: 0,
            miss: 0,
            tainted: None,
        });
        let _ = self.stored[idx].insn;
        self.cur_parent = Some(idx);
        self.cur.first_insn = pc;
        self.cur.hist.clear();
        self.cur.dfs_depth += 1;
        self.reset_marks();
        self.explored.entry(pc).or_default().insert(0, idx);
        Ok(false)
    }

    /// The current path was pruned against a state whose marks may be
    /// incomplete because loop head `head` is not finished: every
    /// ancestor below `head` may have incomplete marks too.
    fn taint_ancestors(&mut self, head: usize) {
        let mut p = self.cur_parent;
        while let Some(i) = p {
            if i == head {
                break;
            }
            let Some(st) = self.stored.get_mut(i) else {
                break;
            };
            if st.tainted.is_none() {
                st.tainted = Some(head);
            }
            p = st.parent;
        }
    }

    /// Registers live at the current point of each frame: the current
    /// instruction for the innermost, the call site for the callers
    /// (`frame_insn_idx`).
    fn static_live_masks(&self, pc: usize) -> Vec<u16> {
        let n = self.cur.frames.len();
        (0..n)
            .map(|i| {
                let at = if i + 1 == n {
                    pc
                } else {
                    self.cur.frames[i + 1].callsite
                };
                self.live_regs.get(at).copied().unwrap_or(0x3ff)
            })
            .collect()
    }

    /// `find_prev_entry`: the unfinished state at `pc` with the same call
    /// chain that the current path came from (the previous iteration).
    /// With `skip_parent`, the checkpoint just made at `pc` for the
    /// current state does not count (the kernel passes `cur->parent`).
    pub(crate) fn find_prev_entry(&self, pc: usize, skip_parent: bool) -> Option<usize> {
        let list = self.explored.get(&pc)?;
        let depth = if skip_parent {
            self.cur.dfs_depth.saturating_sub(1)
        } else {
            self.cur.dfs_depth
        };
        list.iter().copied().find(|&si| {
            let s = &self.stored[si];
            s.branches > 0
                && s.state.dfs_depth < depth
                && s.state.frames.len() == self.cur.frames.len()
                && s.state
                    .frames
                    .iter()
                    .zip(self.cur.frames.iter())
                    .all(|(a, b)| a.callsite == b.callsite)
        })
    }

    /// `widen_imprecise_scalars`: scalars that changed since the previous
    /// iteration and are not precise become unknown, so that iterations
    /// converge.
    pub(crate) fn widen_imprecise_scalars(&mut self, prev: usize) {
        let Some(old) = self.stored.get(prev).map(|s| s.state.clone()) else {
            return;
        };
        for (fo, fc) in old.frames.iter().zip(self.cur.frames.iter_mut()) {
            for (ro, rc) in fo.regs.iter().zip(fc.regs.iter_mut()) {
                widen(ro, rc);
            }
            for (so, sc) in fo.stack.iter().zip(fc.stack.iter_mut()) {
                if so.is_spill() && sc.is_spill() {
                    widen(&so.spilled, &mut sc.spilled);
                }
            }
        }
    }

    pub fn next_id(&mut self) -> u32 {
        self.id_gen += 1;
        self.id_gen
    }

    pub fn reg(&self, r: usize) -> &Reg {
        &self.cur.cur().regs[r]
    }

    pub fn reg_mut(&mut self, r: usize) -> &mut Reg {
        &mut self.cur.cur_mut().regs[r]
    }

    /// `check_reg_arg(SRC_OP)`: initialized, and now read.
    pub fn check_src(&mut self, r: usize) -> Res<()> {
        if self.reg(r).ty == RegType::NotInit {
            return eacces!("R{r} !read_ok");
        }
        if r != 10 {
            let f = self.cur.curframe();
            self.mark_read(f, Loc::Reg(r));
        }
        Ok(())
    }

    /// `check_reg_arg(DST_OP)`: writable, and now written.
    pub fn check_dst(&mut self, r: usize) -> Res<()> {
        if r == 10 {
            return eacces!("frame pointer is read only");
        }
        let f = self.cur.curframe();
        self.mark_written(f, Loc::Reg(r));
        Ok(())
    }

    /// `push_insn_history`: an entry for the current instruction (one
    /// per visit; later flags merge into it).
    pub(crate) fn push_hist(&mut self) -> &mut HistEntry {
        if !self.hist_cur || self.cur.hist.is_empty() {
            self.cur.hist.push(HistEntry {
                idx: self.insn_idx,
                prev: self.hist_prev,
                ..HistEntry::default()
            });
            self.hist_cur = true;
        }
        let n = self.cur.hist.len() - 1;
        &mut self.cur.hist[n]
    }

    /// Records that the current instruction spilled to or filled from
    /// stack slot `spi` of `frame` (`INSN_F_STACK_ACCESS`).
    pub(crate) fn record_stack_access(&mut self, frame: usize, spi: usize) {
        self.push_hist().stack = Some((frame as u32, spi as u32));
    }

    /// A fresh frame identity.
    pub(crate) fn next_frame_uid(&mut self) -> u32 {
        self.frame_uid += 1;
        self.frame_uid
    }

    /// `__is_pointer_value` with this load's `allow_ptr_leaks`.
    pub fn is_pointer_value(&self, r: usize) -> bool {
        !self.privileges().allow_ptr_leaks && self.reg(r).is_pointer()
    }

    fn step(&mut self, pc: usize, op: Op) -> Res<Flow> {
        match op {
            Op::Alu { bits, op, dst, src } => {
                self.check_alu(pc, bits, op, dst.index(), src)?;
                Ok(Flow::Next(pc + 1))
            }
            Op::Neg { bits, dst } => {
                let d = dst.index();
                self.check_src(d)?;
                if self.is_pointer_value(d) {
                    return eacces!("R{d} pointer arithmetic prohibited");
                }
                self.check_dst(d)?;
                let r = self.reg(d).clone();
                *self.reg_mut(d) = if r.ty == RegType::Scalar {
                    Reg::scalar(alu::neg(&r.v, bits))
                } else {
                    Reg::unknown()
                };
                Ok(Flow::Next(pc + 1))
            }
            Op::End { order, width, dst } => {
                let d = dst.index();
                self.end_like(d, |v| alu::end(v, order, width))?;
                Ok(Flow::Next(pc + 1))
            }
            Op::Bswap { width, dst } => {
                let d = dst.index();
                self.end_like(d, |v| alu::bswap(v, width))?;
                Ok(Flow::Next(pc + 1))
            }
            Op::MovSx {
                bits,
                dst,
                src,
                from,
            } => {
                let (d, s) = (dst.index(), src.index());
                self.check_src(s)?;
                self.check_dst(d)?;
                let sr = self.reg(s).clone();
                if self.is_pointer_value(s) {
                    return if bits == Bits::B64 {
                        eacces!("R{s} sign-extension part of pointer")
                    } else {
                        eacces!("R{s} partial copy of pointer")
                    };
                }
                *self.reg_mut(d) = if sr.ty == RegType::Scalar {
                    Reg::scalar(alu::movsx(&sr.v, from, bits))
                } else {
                    Reg::unknown()
                };
                Ok(Flow::Next(pc + 1))
            }
            Op::AddrSpaceCast { .. } => einval!(
                "addr_space_cast insn can only be used in a program that has an associated arena"
            ),
            Op::LdImm64 { dst, imm } => {
                self.check_ld_imm(pc, dst.index(), imm)?;
                Ok(Flow::Next(pc + 2))
            }
            Op::Load {
                width,
                dst,
                src,
                off,
            } => {
                self.check_load(pc, width, dst.index(), src.index(), off, false)?;
                Ok(Flow::Next(pc + 1))
            }
            Op::LoadSx {
                width,
                dst,
                src,
                off,
            } => {
                self.check_load(pc, width, dst.index(), src.index(), off, true)?;
                Ok(Flow::Next(pc + 1))
            }
            Op::Store {
                width,
                dst,
                off,
                src,
            } => {
                self.check_store(pc, width, dst.index(), off, src)?;
                Ok(Flow::Next(pc + 1))
            }
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            } => {
                self.check_atomic(pc, width, op, dst.index(), off, src.index())?;
                Ok(Flow::Next(pc + 1))
            }
            Op::LoadAcquire {
                width,
                dst,
                src,
                off,
            } => {
                self.check_load(pc, width, dst.index(), src.index(), off, false)?;
                Ok(Flow::Next(pc + 1))
            }
            Op::StoreRelease {
                width,
                dst,
                off,
                src,
            } => {
                self.check_store(pc, width, dst.index(), off, Source::Reg(src))?;
                Ok(Flow::Next(pc + 1))
            }
            Op::LdAbs { .. } | Op::LdInd { .. } => {
                self.check_ld_abs(pc, op).map(|()| Flow::Next(pc + 1))
            }
            Op::Ja { off } => {
                self.jmps_processed += 1;
                Ok(Flow::Next((pc as i64 + i64::from(off) + 1) as usize))
            }
            Op::Gotol { off } => {
                self.jmps_processed += 1;
                Ok(Flow::Next((pc as i64 + i64::from(off) + 1) as usize))
            }
            Op::MayGoto { off } => {
                // Both outcomes are possible: the budget may run out any
                // time. The fall-through (budget left) is explored later
                // one level deeper, widened against the previous visit so
                // that iterations converge; this path takes the jump.
                self.jmps_processed += 1;
                let target = (pc as i64 + i64::from(off) + 1) as usize;
                let mut st = self.cur.clone();
                st.may_goto_depth += 1;
                if let Some(prev) = self.find_prev_entry(pc, true) {
                    let saved = std::mem::replace(&mut self.cur, st);
                    self.widen_imprecise_scalars(prev);
                    st = std::mem::replace(&mut self.cur, saved);
                }
                self.push_branch(st, pc + 1, pc)?;
                Ok(Flow::Next(target))
            }
            Op::Jmp {
                bits,
                cond,
                dst,
                src,
                off,
            } => {
                self.jmps_processed += 1;
                self.check_cond_jmp(pc, bits, cond, dst.index(), src, off)
            }
            Op::Call(target) => {
                self.jmps_processed += 1;
                match target {
                    CallTarget::Helper { id } => self.check_helper_call(pc, id),
                    CallTarget::Local { offset } => self.check_func_call(pc, offset),
                    CallTarget::Kfunc { btf_id, .. } => self.check_kfunc_call(pc, btf_id),
                }
            }
            Op::Exit => {
                self.jmps_processed += 1;
                self.check_exit(pc)
            }
        }
    }

    fn end_like(&mut self, d: usize, f: impl Fn(&ScalarValue) -> ScalarValue) -> Res<()> {
        self.check_src(d)?;
        if self.is_pointer_value(d) {
            return eacces!("R{d} pointer arithmetic prohibited");
        }
        self.check_dst(d)?;
        let r = self.reg(d).clone();
        *self.reg_mut(d) = if r.ty == RegType::Scalar {
            Reg::scalar(f(&r.v))
        } else {
            Reg::unknown()
        };
        Ok(())
    }

    fn check_ld_imm(&mut self, _pc: usize, d: usize, imm: Imm64) -> Res<()> {
        self.check_dst(d)?;
        let reg = match imm {
            Imm64::Const(v) => Reg::known(v),
            Imm64::MapFd { fd } => {
                let m = self.map_idx(MapRef::Fd(fd))?;
                Reg {
                    map: m,
                    ..Reg::ptr(RegType::ConstMap)
                }
            }
            Imm64::MapIdx { idx } => {
                let m = self.map_idx(MapRef::Idx(idx))?;
                Reg {
                    map: m,
                    ..Reg::ptr(RegType::ConstMap)
                }
            }
            Imm64::MapValue { fd, offset } => {
                let m = self.map_idx(MapRef::Fd(fd))?;
                Reg {
                    map: m,
                    off: offset as i32,
                    ..Reg::ptr(RegType::MapValue)
                }
            }
            Imm64::MapIdxValue { idx, offset } => {
                let m = self.map_idx(MapRef::Idx(idx))?;
                Reg {
                    map: m,
                    off: offset as i32,
                    ..Reg::ptr(RegType::MapValue)
                }
            }
            Imm64::Func { offset } => {
                if self.info.func_info.is_empty() {
                    return einval!("missing btf func_info");
                }
                let target = (self.insn_idx as i64 + i64::from(offset) + 1) as usize;
                let sub = self.cfg.subprog_of(target);
                Reg {
                    subprog: sub as u32,
                    ..Reg::ptr(RegType::Func)
                }
            }
            Imm64::BtfId { .. } => {
                return einval!("ksym (BPF_PSEUDO_BTF_ID) is not supported without host BTF");
            }
        };
        *self.reg_mut(d) = reg;
        Ok(())
    }

    fn check_ld_abs(&mut self, _pc: usize, _op: Op) -> Res<()> {
        // LD_ABS/LD_IND need an skb context (r6) and may exit the program.
        if !self.env.may_access_skb() {
            return einval!("BPF_LD_[ABS|IND] instructions not allowed for this program type");
        }
        self.check_src(6)?;
        self.check_reference_leak("BPF_LD_[ABS|IND]")?;
        if self.reg(6).ty != RegType::Ctx {
            return einval!("at the time of BPF_LD_ABS|IND R6 != pointer to skb");
        }
        let f = self.cur.curframe();
        self.mark_read(f, Loc::Reg(6));
        if let Op::LdInd { src, .. } = _op {
            self.check_src(src.index())?;
        }
        for r in 1..=5 {
            *self.reg_mut(r) = Reg::not_init();
        }
        *self.reg_mut(0) = Reg::unknown();
        Ok(())
    }

    /// `check_alu_op` for the two-operand operations.
    fn check_alu(&mut self, _pc: usize, bits: Bits, op: AluOp, d: usize, src: Source) -> Res<()> {
        if let Source::Reg(s) = src {
            self.check_src(s.index())?;
        }
        if op == AluOp::Mov {
            self.check_dst(d)?;
            return self.alu_mov(bits, d, src);
        }
        self.check_src(d)?;
        if let Source::Imm(imm) = src {
            if matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod) && imm == 0 {
                return einval!("div by zero");
            }
            if matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh) {
                let size = if bits == Bits::B64 { 64 } else { 32 };
                if imm < 0 || imm >= size {
                    return einval!("invalid shift {imm}");
                }
            }
        }
        self.check_dst(d)?;
        let dr = self.reg(d).clone();
        let sr = match src {
            Source::Reg(s) => self.reg(s.index()).clone(),
            Source::Imm(imm) => Reg::scalar(ScalarValue::from_imm(imm)),
        };
        let leaks = self.privileges().allow_ptr_leaks;
        if sr.ty != RegType::Scalar {
            if dr.ty != RegType::Scalar {
                if op == AluOp::Sub && leaks {
                    *self.reg_mut(d) = Reg::unknown();
                    return Ok(());
                }
                return eacces!("R{d} pointer {} pointer prohibited", alu_name(op));
            }
            self.mark_precise(d)?;
            return self.adjust_ptr(bits, op, d, &sr, &dr, true);
        }
        if dr.ty != RegType::Scalar {
            if let Source::Reg(s) = src {
                self.mark_precise(s.index())?;
            }
            return self.adjust_ptr(bits, op, d, &dr, &sr, false);
        }
        if let Source::Reg(_) = src
            && matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod)
            && let Some(aux) = self.aux.get_mut(_pc)
        {
            let seen = crate::facts::DivisorFact::of(&sr.v, bits);
            aux.divisor = Some(aux.divisor.map_or(seen, |f| f.and(seen)));
        }
        let v = alu::alu(&dr.v, op, &sr.v, bits);
        *self.reg_mut(d) = Reg::scalar(v);
        Ok(())
    }

    fn alu_mov(&mut self, bits: Bits, d: usize, src: Source) -> Res<()> {
        match src {
            Source::Imm(imm) => {
                let v = match bits {
                    Bits::B64 => imm as i64 as u64,
                    Bits::B32 => u64::from(imm as u32),
                };
                *self.reg_mut(d) = Reg::known(v);
            }
            Source::Reg(s) => {
                let s = s.index();
                let sr = self.reg(s).clone();
                match bits {
                    Bits::B64 => {
                        let mut sr = sr;
                        if sr.ty == RegType::Scalar && sr.id == 0 && !sr.v.var_off.is_const() {
                            let id = self.next_id();
                            self.reg_mut(s).id = id;
                            sr.id = id;
                        }
                        *self.reg_mut(d) = sr;
                    }
                    Bits::B32 => {
                        if self.is_pointer_value(s) {
                            return eacces!("R{s} partial copy of pointer");
                        }
                        if sr.ty == RegType::Scalar {
                            let fits = sr.v.umax <= u64::from(u32::MAX);
                            let mut nr = sr.clone();
                            if fits && nr.id == 0 && !nr.v.var_off.is_const() {
                                let id = self.next_id();
                                self.reg_mut(s).id = id;
                                nr.id = id;
                            }
                            if !fits {
                                nr.id = 0;
                            }
                            nr.v = alu::mov(&sr.v, Bits::B32);
                            *self.reg_mut(d) = nr;
                        } else {
                            *self.reg_mut(d) = Reg::unknown();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `adjust_ptr_min_max_vals`: `ptr op off` into `dst`.
    fn adjust_ptr(
        &mut self,
        bits: Bits,
        op: AluOp,
        d: usize,
        ptr: &Reg,
        offr: &Reg,
        scalar_is_dst: bool,
    ) -> Res<()> {
        let o = &offr.v;
        let known = o.var_off.is_const();
        if (known && (o.smin != o.smax || o.umin != o.umax)) || o.smin > o.smax || o.umin > o.umax {
            *self.reg_mut(d) = Reg::unknown();
            return Ok(());
        }
        let tstr = ptr.type_str();
        if bits != Bits::B64 {
            if op == AluOp::Sub && self.privileges().allow_ptr_leaks {
                *self.reg_mut(d) = Reg::unknown();
                return Ok(());
            }
            return eacces!("R{d} 32-bit pointer arithmetic prohibited");
        }
        if ptr.maybe_null() {
            return eacces!("R{d} pointer arithmetic on {tstr} prohibited, null-check it first");
        }
        match ptr.ty {
            RegType::Ctx
            | RegType::MapValue
            | RegType::MapKey
            | RegType::Stack
            | RegType::PacketMeta
            | RegType::Packet
            | RegType::BtfId
            | RegType::Mem
            | RegType::Func => {}
            RegType::ConstMap if known && o.smin == 0 && op == AluOp::Add => {}
            _ => return eacces!("R{d} pointer arithmetic on {tstr} prohibited"),
        }
        sane_offset(offr, ptr.ty, ptr.flags, false)?;
        sane_offset(ptr, ptr.ty, ptr.flags, false)?;
        let mut out = ptr.clone();
        let p = &ptr.v;
        match op {
            AluOp::Add => {
                let noff = i64::from(ptr.off) + o.smin;
                if known && noff == i64::from(noff as i32) {
                    out.off = noff as i32;
                } else {
                    let mut v = ScalarValue::unknown();
                    match (p.smin.checked_add(o.smin), p.smax.checked_add(o.smax)) {
                        (Some(a), Some(b)) => {
                            v.smin = a;
                            v.smax = b;
                        }
                        _ => {
                            v.smin = i64::MIN;
                            v.smax = i64::MAX;
                        }
                    }
                    match (p.umin.checked_add(o.umin), p.umax.checked_add(o.umax)) {
                        (Some(a), Some(b)) => {
                            v.umin = a;
                            v.umax = b;
                        }
                        _ => {
                            v.umin = 0;
                            v.umax = u64::MAX;
                        }
                    }
                    v.var_off = p.var_off.add(o.var_off);
                    v.mark32_unbounded();
                    out.v = v;
                    if ptr.ty.is_pkt() {
                        out.id = self.next_id();
                        out.range = 0;
                    }
                }
            }
            AluOp::Sub => {
                if scalar_is_dst {
                    return eacces!("R{d} tried to subtract pointer from scalar");
                }
                if ptr.ty == RegType::Stack {
                    return eacces!("R{d} subtraction from stack pointer prohibited");
                }
                let noff = i64::from(ptr.off) - o.smin;
                if known && noff == i64::from(noff as i32) {
                    out.off = noff as i32;
                } else {
                    let mut v = ScalarValue::unknown();
                    match (p.smin.checked_sub(o.smax), p.smax.checked_sub(o.smin)) {
                        (Some(a), Some(b)) => {
                            v.smin = a;
                            v.smax = b;
                        }
                        _ => {
                            v.smin = i64::MIN;
                            v.smax = i64::MAX;
                        }
                    }
                    if p.umin < o.umax {
                        v.umin = 0;
                        v.umax = u64::MAX;
                    } else {
                        v.umin = p.umin - o.umax;
                        v.umax = p.umax - o.umin;
                    }
                    v.var_off = p.var_off.sub(o.var_off);
                    v.mark32_unbounded();
                    out.v = v;
                    if ptr.ty.is_pkt() {
                        out.id = self.next_id();
                        if o.smin < 0 {
                            out.range = 0;
                        }
                    }
                }
            }
            AluOp::And | AluOp::Or | AluOp::Xor => {
                return eacces!(
                    "R{d} bitwise operator {} on pointer prohibited",
                    alu_name(op)
                );
            }
            _ => {
                return eacces!(
                    "R{d} pointer arithmetic with {} operator prohibited",
                    alu_name(op)
                );
            }
        }
        out.v.mark32_unbounded();
        out.v.sync();
        sane_offset(&out, ptr.ty, ptr.flags, true)?;
        *self.reg_mut(d) = out;
        Ok(())
    }

    /// `check_cond_jmp_op`.
    fn check_cond_jmp(
        &mut self,
        pc: usize,
        bits: Bits,
        cond: Cond,
        d: usize,
        src: Source,
        off: i16,
    ) -> Res<Flow> {
        let target = (pc as i64 + i64::from(off) + 1) as usize;
        let src_reg = match src {
            Source::Reg(s) => {
                let s = s.index();
                self.check_src(s)?;
                if self.is_pointer_value(s) {
                    return eacces!("R{s} pointer comparison prohibited");
                }
                Some(s)
            }
            Source::Imm(_) => None,
        };
        self.check_src(d)?;
        let dr = self.reg(d).clone();
        let sr = match (src, src_reg) {
            (_, Some(s)) => self.reg(s).clone(),
            (Source::Imm(imm), None) => Reg::scalar(ScalarValue::from_imm(imm)),
            _ => Reg::unknown(),
        };
        // Decided branches.
        let taken = if dr.ty == RegType::Scalar && sr.ty == RegType::Scalar {
            branch::branch_taken(&dr.v, &sr.v, cond, bits)
        } else {
            ptr_branch_taken(&dr, &sr, cond, bits)
        };
        if taken.is_some() {
            // The decision rests on the scalars' exact values.
            if dr.ty == RegType::Scalar {
                self.mark_precise(d)?;
            }
            if let Some(s) = src_reg
                && sr.ty == RegType::Scalar
            {
                self.mark_precise(s)?;
            }
        }
        match taken {
            Some(true) => return Ok(Flow::Next(target)),
            Some(false) => return Ok(Flow::Next(pc + 1)),
            None => {}
        }
        if dr.is_pointer() && !sr.is_pointer() && !dr.maybe_null() && self.is_pointer_value(d) {
            return eacces!("R{d} pointer comparison prohibited");
        }
        // Scalars sharing an id are refined together: precision of one
        // needs the others (`collect_linked_regs`).
        if dr.ty == RegType::Scalar && sr.ty == RegType::Scalar {
            let linked = self.linked_scalars(&[dr.id, if src_reg.is_some() { sr.id } else { 0 }]);
            if linked.len() > 1 {
                self.push_hist().linked = linked;
            }
        }
        let mut other = self.cur.clone();
        // Scalar refinement on both sides.
        if dr.ty == RegType::Scalar && sr.ty == RegType::Scalar {
            if src_reg == Some(d) {
                let (t, nt) = branch::refine_same_register(&dr.v, cond, bits);
                set_scalar(&mut other, d, t);
                set_scalar(&mut self.cur, d, nt);
            } else {
                let r = branch::refine(&dr.v, &sr.v, cond, bits);
                let t_ok =
                    r.taken.0.check_invariants().is_ok() && r.taken.1.check_invariants().is_ok();
                let n_ok = r.not_taken.0.check_invariants().is_ok()
                    && r.not_taken.1.check_invariants().is_ok();
                set_scalar(&mut other, d, r.taken.0);
                set_scalar(&mut self.cur, d, r.not_taken.0);
                if let Some(s) = src_reg {
                    set_scalar(&mut other, s, r.taken.1);
                    set_scalar(&mut self.cur, s, r.not_taken.1);
                }
                if !t_ok {
                    return Ok(Flow::Next(pc + 1));
                }
                if !n_ok {
                    self.cur = other;
                    return Ok(Flow::Next(target));
                }
            }
        } else if dr.is_pointer() || sr.is_pointer() {
            // Null checks.
            let is_eq_ne = matches!(cond, Cond::Eq | Cond::Ne) && bits == Bits::B64;
            if is_eq_ne {
                let (ptr_side, other_side) = if dr.maybe_null() && sr.is_null() {
                    (Some(dr.clone()), true)
                } else if sr.maybe_null() && dr.is_null() {
                    (Some(sr.clone()), true)
                } else {
                    (None, false)
                };
                if let (Some(p), true) = (ptr_side, other_side) {
                    // Eq: taken side is NULL. Ne: taken side is non-NULL.
                    let taken_null = cond == Cond::Eq;
                    mark_ptr_or_null(&mut other, p.id, taken_null, &self.inner_maps);
                    mark_ptr_or_null(&mut self.cur, p.id, !taken_null, &self.inner_maps);
                }
            }
            if bits == Bits::B64
                && let Some(s) = src_reg
            {
                let sreg = self.reg(s).clone();
                try_match_pkt(&mut self.cur, &mut other, cond, &dr, &sreg);
            }
        }
        self.push_branch(other, target, pc)?;
        if self.log_level >= 2 {
            // The kernel prints the state after the jump at level 2.
        }
        Ok(Flow::Next(pc + 1))
    }

    /// Every scalar register and spilled scalar with one of `ids`, as
    /// history entries (`(frame, reg)` or `(frame, 16 + spi)`).
    fn linked_scalars(&self, ids: &[u32]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for (fi, f) in self.cur.frames.iter().enumerate() {
            for (r, reg) in f.regs.iter().enumerate() {
                if reg.ty == RegType::Scalar && reg.id != 0 && ids.contains(&reg.id) {
                    out.push((fi as u32, r as u32));
                }
            }
            for (spi, slot) in f.stack.iter().enumerate() {
                if slot.is_spill()
                    && slot.spilled.ty == RegType::Scalar
                    && slot.spilled.id != 0
                    && ids.contains(&slot.spilled.id)
                {
                    out.push((fi as u32, 16 + spi as u32));
                }
            }
        }
        out
    }

    /// `BPF_EXIT`: return from a subprogram or end the path.
    fn check_exit(&mut self, pc: usize) -> Res<Flow> {
        let _ = pc;
        let in_cb = self.cur.cur().callback.is_some();
        let curframe = self.cur.curframe();
        if curframe == 0 || in_cb {
            // check_reference_leak for the main program (and callbacks,
            // for references they acquired themselves).
            if curframe == 0 {
                self.check_reference_leak("BPF_EXIT instruction in main prog")?;
            }
        }
        if curframe > 0 {
            return self.prepare_func_exit();
        }
        // check_return_code for the main program.
        let rule = self
            .struct_ops_return_rule()
            .unwrap_or_else(|| self.env.return_rule());
        match rule {
            ReturnRule::Void => {}
            rule => {
                self.check_src(0)?;
                if self.is_pointer_value(0) {
                    return eacces!("R0 leaks addr as return value");
                }
                if let ReturnRule::Range { min, max } = rule {
                    let r0 = self.reg(0).clone();
                    if r0.ty == RegType::Scalar {
                        self.mark_precise(0)?;
                    }
                    if r0.ty != RegType::Scalar {
                        return einval!(
                            "At program exit the register R0 is not a known value ({})",
                            r0.type_str()
                        );
                    }
                    let v = &r0.v;
                    if v.smin < i64::from(min) || v.smax > i64::from(max) {
                        // verbose_invalid_scalar
                        let mut s = String::from("At program exit the register R0 has");
                        let mut unknown = true;
                        if v.smin > i64::MIN {
                            let _ = write!(s, " smin={}", v.smin);
                            unknown = false;
                        }
                        if v.smax < i64::MAX {
                            let _ = write!(s, " smax={}", v.smax);
                            unknown = false;
                        }
                        if unknown {
                            s.push_str(" unknown scalar value");
                        }
                        let _ = write!(s, " should have been in [{min}, {max}]");
                        return Err(Reject::new(EINVAL, s));
                    }
                }
            }
        }
        Ok(Flow::EndPath)
    }

    /// `check_max_stack_depth`: the deepest chain of frames must fit in
    /// `MAX_BPF_STACK` bytes, each frame rounded up to 32.
    fn check_max_stack_depth(&mut self) -> Res<()> {
        let n = self.stack_depth.len();
        // round_up_stack_depth with the JIT: multiples of 16.
        let round = |d: usize| d.div_ceil(16) * 16;
        // Depth-first over the static call graph from subprogram 0.
        let mut stack: Vec<(usize, usize, usize)> = vec![(0, 0, round(self.stack_depth[0]))];
        while let Some((sub, frame, depth)) = stack.pop() {
            if depth as i64 > MAX_BPF_STACK {
                return Err(Reject::new(
                    EACCES,
                    format!(
                        "combined stack size of {} calls is {}. Too large",
                        frame + 1,
                        depth
                    ),
                ));
            }
            if frame + 1 > MAX_CALL_FRAMES {
                return Err(Reject::new(
                    E2BIG,
                    format!("the call stack of {} frames is too deep !", frame + 1),
                ));
            }
            for &c in &self.callees[sub] {
                if c < n && frame < MAX_CALL_FRAMES {
                    stack.push((c, frame + 1, depth + round(self.stack_depth[c])));
                }
            }
        }
        Ok(())
    }
}

/// How the walk continues after one instruction.
pub(crate) enum Flow {
    /// Go on at this instruction.
    Next(usize),
    /// The path ended (exit of the main program).
    EndPath,
}

pub(crate) fn alu_name(op: AluOp) -> &'static str {
    op.symbol()
}

/// `check_reg_sane_offset`. For the `result` of pointer arithmetic, Linux 6.18 words
/// an out-of-range minimum as the pointer's offset.
fn sane_offset(reg: &Reg, ty: RegType, flags: RegFlags, result: bool) -> Res<()> {
    let tstr = crate::state::type_str(ty, flags);
    let v = &reg.v;
    let known = v.var_off.is_const();
    let val = v.var_off.value() as i64;
    if known && (val >= MAX_VAR_OFF || val <= -MAX_VAR_OFF) {
        return eacces_einval(format!(
            "math between {tstr} pointer and {val} is not allowed"
        ));
    }
    if i64::from(reg.off) >= MAX_VAR_OFF || i64::from(reg.off) <= -MAX_VAR_OFF {
        return eacces_einval(format!("{tstr} pointer offset {} is not allowed", reg.off));
    }
    if v.smin == i64::MIN {
        return eacces_einval(format!(
            "math between {tstr} pointer and register with unbounded min value is not allowed"
        ));
    }
    if v.smin >= MAX_VAR_OFF || v.smin <= -MAX_VAR_OFF {
        if result {
            return eacces_einval(format!("{tstr} pointer offset {} is not allowed", v.smin));
        }
        return eacces_einval(format!(
            "value {} makes {tstr} pointer be out of bounds",
            v.smin
        ));
    }
    Ok(())
}

fn eacces_einval(msg: String) -> Res<()> {
    Err(Reject::new(EINVAL, msg))
}

fn set_scalar(st: &mut State, r: usize, v: ScalarValue) {
    let f = st.cur_mut();
    let id = f.regs[r].id;
    f.regs[r].v = v;
    // sync_linked_regs: registers sharing the id learn the same bounds.
    if id != 0 {
        for fr in st.frames.iter_mut() {
            for reg in fr.regs.iter_mut() {
                if reg.ty == RegType::Scalar && reg.id == id {
                    reg.v = v;
                }
            }
            for slot in fr.stack.iter_mut() {
                if slot.is_spill() && slot.spilled.ty == RegType::Scalar && slot.spilled.id == id {
                    slot.spilled.v = v;
                }
            }
        }
    }
}

/// `mark_ptr_or_null_regs`: every copy of the pointer with `id` becomes
/// NULL (a zero scalar) or a non-NULL pointer; a non-NULL value of a map of
/// maps (`inner_maps`: outer map index to its template's) is the inner map
/// (`CONST_PTR_TO_MAP` of `inner_map_meta`).
fn mark_ptr_or_null(st: &mut State, id: u32, is_null: bool, inner_maps: &HashMap<u32, u32>) {
    if id == 0 {
        return;
    }
    let mut released = false;
    let fix = |reg: &mut Reg, released: &mut bool| {
        if reg.maybe_null() && reg.id == id {
            if is_null {
                if reg.ref_obj_id == id {
                    *released = true;
                }
                *reg = Reg::known(0);
            } else if let Some(&inner) = inner_maps
                .get(&reg.map)
                .filter(|_| reg.ty == RegType::MapValue)
            {
                *reg = Reg {
                    map: inner,
                    ..Reg::ptr(RegType::ConstMap)
                };
            } else {
                reg.flags = reg.flags.without(RegFlags::MAYBE_NULL);
                // The id only served the null check; the reference (if any)
                // stays in `ref_obj_id`.
                reg.id = 0;
            }
        }
    };
    for fr in st.frames.iter_mut() {
        for reg in fr.regs.iter_mut() {
            fix(reg, &mut released);
        }
        for slot in fr.stack.iter_mut() {
            if slot.is_spill() {
                fix(&mut slot.spilled, &mut released);
            }
        }
    }
    if released {
        st.refs.retain(|r| r.id != id);
    }
}

/// `is_branch_taken` when a pointer is involved: a non-NULL pointer
/// against 0.
fn ptr_branch_taken(dr: &Reg, sr: &Reg, cond: Cond, bits: Bits) -> Option<bool> {
    if bits != Bits::B64 {
        return None;
    }
    let (p, k) = if dr.is_pointer() && sr.ty == RegType::Scalar {
        (dr, sr)
    } else if sr.is_pointer() && dr.ty == RegType::Scalar {
        (sr, dr)
    } else {
        return None;
    };
    if p.maybe_null() || !k.is_null() {
        return None;
    }
    match cond {
        Cond::Eq => Some(false),
        Cond::Ne => Some(true),
        _ => None,
    }
}

const MAX_PACKET_OFF: i64 = 0xffff;

/// `find_good_pkt_pointers`.
fn find_good_pkt(st: &mut State, dst: &Reg, right_open: bool) {
    if dst.off < 0 || (dst.off == 0 && right_open) {
        return;
    }
    if dst.v.umax > MAX_PACKET_OFF as u64 || dst.v.umax as i64 + i64::from(dst.off) > MAX_PACKET_OFF
    {
        return;
    }
    let mut new_range = dst.off;
    if right_open {
        new_range += 1;
    }
    for fr in st.frames.iter_mut() {
        for reg in fr.regs.iter_mut() {
            if reg.ty == dst.ty && reg.id == dst.id {
                reg.range = reg.range.max(new_range);
            }
        }
        for slot in fr.stack.iter_mut() {
            if slot.is_spill() && slot.spilled.ty == dst.ty && slot.spilled.id == dst.id {
                slot.spilled.range = slot.spilled.range.max(new_range);
            }
        }
    }
}

fn is_init_pkt(r: &Reg, ty: RegType) -> bool {
    r.ty == ty && r.off == 0 && r.v.var_off.equals_const(0)
}

/// `try_match_pkt_pointers`: comparisons of packet pointers with
/// `data_end` (or `data_meta` with `data`) give ranges. `this` is the
/// fall-through state, `other` the taken one.
fn try_match_pkt(this: &mut State, other: &mut State, cond: Cond, d: &Reg, s: &Reg) {
    let fwd = (d.ty == RegType::Packet && s.ty == RegType::PacketEnd)
        || (d.ty == RegType::PacketMeta && is_init_pkt(s, RegType::Packet));
    let rev = (d.ty == RegType::PacketEnd && s.ty == RegType::Packet)
        || (is_init_pkt(d, RegType::Packet) && s.ty == RegType::PacketMeta);
    match cond {
        Cond::Gt if fwd => find_good_pkt(this, d, false),
        Cond::Gt if rev => find_good_pkt(other, s, true),
        Cond::Lt if fwd => find_good_pkt(other, d, true),
        Cond::Lt if rev => find_good_pkt(this, s, false),
        Cond::Ge if fwd => find_good_pkt(this, d, true),
        Cond::Ge if rev => find_good_pkt(other, s, false),
        Cond::Le if fwd => find_good_pkt(other, d, false),
        Cond::Le if rev => find_good_pkt(this, s, true),
        _ => {}
    }
}

/// The kernel's message for an instruction it finds malformed when it
/// reaches it (the reserved-field checks of `do_check` and friends).
fn decode_reject(e: &DecodeError, insn: Option<&Insn>) -> Reject {
    use structops_isa::opcode as oc;
    let code = insn.map_or(0, |i| i.code);
    let msg = match e {
        DecodeError::UnknownOpcode { code, .. } => format!("unknown opcode {code:02x}"),
        DecodeError::InvalidRegister { reg, .. } => format!("R{reg} is invalid"),
        // check_atomic looks at the operand size before the operation.
        DecodeError::UnknownAtomicOp { .. }
            if oc::class(code) == oc::STX && !matches!(code & 0x18, 0x00 | 0x18) =>
        {
            "invalid atomic operand size".to_owned()
        }
        DecodeError::UnknownAtomicOp { imm, .. } => {
            format!("BPF_ATOMIC uses invalid atomic opcode {imm:02x}")
        }
        DecodeError::TruncatedLdImm64 { .. } | DecodeError::InvalidLdImm64Tail { .. } => {
            "invalid bpf_ld_imm64 insn".to_owned()
        }
        DecodeError::UnknownPseudoSrc { .. } if oc::class(code) == oc::LD => {
            "unrecognized bpf_ld_imm64 insn".to_owned()
        }
        _ => {
            let class = oc::class(code);
            let op = code & 0xf0;
            match class {
                oc::ALU | oc::ALU64 => match op {
                    0x80 => "BPF_NEG uses reserved fields".to_owned(),
                    0xd0 => "BPF_END uses reserved fields".to_owned(),
                    0xb0 => "BPF_MOV uses reserved fields".to_owned(),
                    _ => "BPF_ALU uses reserved fields".to_owned(),
                },
                oc::LDX => "BPF_LDX uses reserved fields".to_owned(),
                oc::ST => "BPF_ST uses reserved fields".to_owned(),
                oc::STX => "BPF_STX uses reserved fields".to_owned(),
                oc::LD => "BPF_LD_[ABS|IND] uses reserved fields".to_owned(),
                _ => match op {
                    0x00 => "BPF_JA uses reserved fields".to_owned(),
                    0x80 => "BPF_CALL uses reserved fields".to_owned(),
                    0x90 => "BPF_EXIT uses reserved fields".to_owned(),
                    _ => "BPF_JMP/JMP32 uses reserved fields".to_owned(),
                },
            }
        }
    };
    Reject::new(EINVAL, msg)
}

/// Width of a memory access in bytes.
pub(crate) fn width_bytes(w: Width) -> u32 {
    w.bytes() as u32
}

/// Registers and stack slots an instruction touched since the state was
/// last printed (`env->scratched_regs` / `scratched_stack_slots`), and
/// where the last instruction line ended (`prev_log_pos`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scratch {
    regs: u16,
    stack: u64,
    /// `(log length after the line, its length)` of the last instruction.
    line: Option<(usize, usize)>,
}

impl Scratch {
    fn all(&mut self) {
        self.regs = u16::MAX;
        self.stack = u64::MAX;
    }

    fn any(&self) -> bool {
        self.regs != 0 || self.stack != 0
    }
}

/// The registers `check_reg_arg` sees for `op` (read or written).
fn op_regs(op: &Op) -> u16 {
    let r = |x: structops_isa::Reg| 1u16 << x.index();
    let s = |x: &Source| match x {
        Source::Reg(x) => r(*x),
        Source::Imm(_) => 0,
    };
    match op {
        Op::Alu { dst, src, .. } | Op::Jmp { dst, src, .. } => r(*dst) | s(src),
        Op::Store { dst, src, .. } => r(*dst) | s(src),
        Op::Neg { dst, .. }
        | Op::End { dst, .. }
        | Op::Bswap { dst, .. }
        | Op::LdImm64 { dst, .. } => r(*dst),
        Op::MovSx { dst, src, .. }
        | Op::AddrSpaceCast { dst, src, .. }
        | Op::Load { dst, src, .. }
        | Op::LoadSx { dst, src, .. }
        | Op::LoadAcquire { dst, src, .. }
        | Op::StoreRelease { dst, src, .. } => r(*dst) | r(*src),
        Op::Atomic { dst, src, .. } => r(*dst) | r(*src) | 1,
        Op::Call(_) => 0x3f,
        Op::LdAbs { .. } => 0x7f,
        Op::LdInd { src, .. } => 0x7f | r(*src),
        Op::Exit => 1,
        Op::Ja { .. } | Op::Gotol { .. } | Op::MayGoto { .. } => 0,
    }
}

impl Verifier<'_> {
    /// The stack slots `op` reads through a constant stack pointer, and
    /// the current frame's stack, before the step.
    fn scratch_before(&self, op: &Op) -> (u64, Vec<crate::state::StackSlot>) {
        let f = self.cur.cur();
        let mut read = 0u64;
        if let Op::Load {
            width, src, off, ..
        }
        | Op::LoadSx {
            width, src, off, ..
        } = op
        {
            let b = &f.regs[src.index()];
            if b.ty == RegType::Stack && b.v.var_off.mask() == 0 {
                let start = b.v.var_off.value() as i64 + i64::from(b.off) + i64::from(*off);
                let size = width.bytes() as i64;
                for byte in start..start + size {
                    if byte < 0 {
                        let spi = (-byte - 1) / 8;
                        if spi < 64 {
                            read |= 1 << spi;
                        }
                    }
                }
            }
        }
        (read, f.stack.clone())
    }

    /// Marks what `op` touched: its registers, the slots it read and the
    /// slots whose contents changed.
    fn scratch_after(&mut self, op: &Op, before: (u64, Vec<crate::state::StackSlot>)) {
        self.scratch.regs |= op_regs(op);
        self.scratch.stack |= before.0;
        let f = self.cur.cur();
        for (spi, slot) in f.stack.iter().enumerate().take(64) {
            if before.1.get(spi) != Some(slot) {
                self.scratch.stack |= 1 << spi;
            }
        }
    }

    /// `print_insn_state`: the scratched part of the state, appended to
    /// the last instruction line when nothing was printed since.
    fn print_insn_state(&mut self, pc: usize) {
        if !self.scratch.any() {
            return;
        }
        let text = self.state_text_of(Some(self.scratch));
        match self.scratch.line {
            Some((end, len)) if end == self.log.len() && end > 0 => {
                self.log.truncate(end - 1);
                // vlog_alignment: pad to the next 8 column stop past 40.
                let width = (len + 4).max(40).div_ceil(8) * 8 - len - 1;
                let _ = write!(self.log, "{:width$};{text}", ' ');
            }
            _ => {
                let _ = write!(self.log, "{pc}:{text}");
            }
        }
        self.log.push('\n');
        self.scratch.regs = 0;
        self.scratch.stack = 0;
        self.scratch.line = None;
    }
}
