//! The abstract state: registers, stack slots, frames and references
//! (`struct bpf_reg_state`, `bpf_stack_state`, `bpf_func_state`,
//! `bpf_verifier_state`).

use std::fmt::{self, Write as _};

use crate::print::{Snum, Unum, write_scalar_ranges};
use crate::scalar::ScalarValue;

/// The base type of a register (`enum bpf_reg_type` without flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RegType {
    /// `NOT_INIT`: never written on this path.
    #[default]
    NotInit,
    /// `SCALAR_VALUE`.
    Scalar,
    /// `PTR_TO_CTX`.
    Ctx,
    /// `CONST_PTR_TO_MAP`.
    ConstMap,
    /// `PTR_TO_MAP_VALUE`.
    MapValue,
    /// `PTR_TO_MAP_KEY`.
    MapKey,
    /// `PTR_TO_STACK`.
    Stack,
    /// `PTR_TO_MEM`.
    Mem,
    /// `PTR_TO_PACKET_META`.
    PacketMeta,
    /// `PTR_TO_PACKET`.
    Packet,
    /// `PTR_TO_PACKET_END`.
    PacketEnd,
    /// `PTR_TO_BTF_ID`.
    BtfId,
    /// `PTR_TO_FUNC`.
    Func,
    /// `PTR_TO_BUF` (iterator buffers; named in messages only).
    Buf,
    /// `PTR_TO_SOCKET`: a full socket (`struct bpf_sock`).
    Socket,
    /// `PTR_TO_SOCK_COMMON`: a socket that may be a request or timewait
    /// socket (`struct bpf_sock`, common fields only).
    SockCommon,
    /// `PTR_TO_TCP_SOCK`: a TCP socket (`struct bpf_tcp_sock`).
    TcpSock,
    /// `PTR_TO_XDP_SOCK`: an AF_XDP socket (`struct bpf_xdp_sock`).
    XdpSock,
}

impl RegType {
    /// The kernel's name of the base type (`reg_type_str`).
    pub const fn name(self) -> &'static str {
        match self {
            RegType::NotInit => "?",
            RegType::Scalar => "scalar",
            RegType::Ctx => "ctx",
            RegType::ConstMap => "map_ptr",
            RegType::MapValue => "map_value",
            RegType::MapKey => "map_key",
            RegType::Stack => "fp",
            RegType::Mem => "mem",
            RegType::PacketMeta => "pkt_meta",
            RegType::Packet => "pkt",
            RegType::PacketEnd => "pkt_end",
            RegType::BtfId => "ptr_",
            RegType::Func => "func",
            RegType::Buf => "buf",
            RegType::Socket => "sock",
            RegType::SockCommon => "sock_common",
            RegType::TcpSock => "tcp_sock",
            RegType::XdpSock => "xdp_sock",
        }
    }

    /// One of the socket pointer types (`type_is_sk_pointer` of the base type).
    pub const fn is_sk_pointer(self) -> bool {
        matches!(
            self,
            RegType::Socket | RegType::SockCommon | RegType::TcpSock | RegType::XdpSock
        )
    }

    /// `PTR_TO_PACKET` or `PTR_TO_PACKET_META` (`reg_is_pkt_pointer`).
    pub const fn is_pkt(self) -> bool {
        matches!(self, RegType::Packet | RegType::PacketMeta)
    }
}

/// Type flags of a register (`PTR_MAYBE_NULL`, `MEM_RDONLY`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RegFlags(u32);

impl RegFlags {
    /// No flags.
    pub const NONE: RegFlags = RegFlags(0);
    /// `PTR_MAYBE_NULL`.
    pub const MAYBE_NULL: RegFlags = RegFlags(1);
    /// `MEM_RDONLY`.
    pub const RDONLY: RegFlags = RegFlags(2);
    /// `MEM_RINGBUF`.
    pub const RINGBUF: RegFlags = RegFlags(4);
    /// `PTR_UNTRUSTED`.
    pub const UNTRUSTED: RegFlags = RegFlags(8);
    /// `PTR_TRUSTED`.
    pub const TRUSTED: RegFlags = RegFlags(16);
    /// `MEM_RCU`: a pointer valid inside the RCU read section.
    pub const RCU: RegFlags = RegFlags(32);
    /// `MEM_USER`: a `__user` pointer (never dereferenced).
    pub const USER: RegFlags = RegFlags(64);
    /// `MEM_PERCPU`: a `__percpu` pointer (never dereferenced).
    pub const PERCPU: RegFlags = RegFlags(128);

    /// Whether every flag of `o` is set.
    pub const fn has(self, o: RegFlags) -> bool {
        self.0 & o.0 == o.0 && o.0 != 0
    }

    /// The union.
    pub const fn with(self, o: RegFlags) -> RegFlags {
        RegFlags(self.0 | o.0)
    }

    /// Without the flags of `o`.
    pub const fn without(self, o: RegFlags) -> RegFlags {
        RegFlags(self.0 & !o.0)
    }
}

/// One register's abstract value (`struct bpf_reg_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Reg {
    /// Base type.
    pub ty: RegType,
    /// Type flags.
    pub flags: RegFlags,
    /// Scalar value, or the variable offset of a pointer.
    pub v: ScalarValue,
    /// Fixed offset of a pointer (or the delta of a linked scalar).
    pub off: i32,
    /// Id shared by copies: null checks and packet ranges apply to all
    /// registers with the same id; for scalars, linked registers.
    pub id: u32,
    /// Id of the reference this pointer holds (0 if none).
    pub ref_obj_id: u32,
    /// Index of the map in the verifier's map table.
    pub map: u32,
    /// Size of `PTR_TO_MEM` memory.
    pub mem_size: u32,
    /// Verified packet range past the pointer (`r=`).
    pub range: i32,
    /// Pointee type of `PTR_TO_BTF_ID`.
    pub btf_id: u32,
    /// Frame of a `PTR_TO_STACK`.
    pub frameno: u32,
    /// Subprogram of a `PTR_TO_FUNC`.
    pub subprog: u32,
    /// The scalar's exact range matters to some later check
    /// (`bpf_reg_state.precise`, set by precision backtracking in
    /// remembered states).
    pub precise: bool,
}

impl Reg {
    /// `NOT_INIT`.
    pub fn not_init() -> Reg {
        Reg::default()
    }

    /// An unknown scalar (`mark_reg_unknown`).
    pub fn unknown() -> Reg {
        Reg {
            ty: RegType::Scalar,
            v: ScalarValue::unknown(),
            ..Reg::default()
        }
    }

    /// A known constant scalar (`__mark_reg_known`).
    pub fn known(value: u64) -> Reg {
        Reg {
            ty: RegType::Scalar,
            v: ScalarValue::constant(value),
            ..Reg::default()
        }
    }

    /// A scalar with this value.
    pub fn scalar(v: ScalarValue) -> Reg {
        Reg {
            ty: RegType::Scalar,
            v,
            ..Reg::default()
        }
    }

    /// A pointer of `ty` with offset zero (`mark_reg_known_zero` + type).
    pub fn ptr(ty: RegType) -> Reg {
        Reg {
            ty,
            v: ScalarValue::constant(0),
            ..Reg::default()
        }
    }

    /// Whether this is a pointer (not a scalar and initialized).
    pub fn is_pointer(&self) -> bool {
        !matches!(self.ty, RegType::Scalar | RegType::NotInit)
    }

    /// Whether this is the constant-zero scalar (`register_is_null`).
    pub fn is_null(&self) -> bool {
        self.ty == RegType::Scalar && self.v.var_off.equals_const(0)
    }

    /// Whether the pointer may be NULL.
    pub fn maybe_null(&self) -> bool {
        self.flags.has(RegFlags::MAYBE_NULL)
    }

    /// The kernel's type string (`reg_type_str`), e.g. `map_value_or_null`.
    pub fn type_str(&self) -> String {
        type_str(self.ty, self.flags)
    }
}

/// The kernel's `reg_type_str` of a type and flags.
pub fn type_str(ty: RegType, flags: RegFlags) -> String {
    let mut s = String::new();
    if flags.has(RegFlags::RDONLY) {
        s.push_str("rdonly_");
    }
    if flags.has(RegFlags::RINGBUF) {
        s.push_str("ringbuf_");
    }
    if flags.has(RegFlags::USER) {
        s.push_str("user_");
    }
    if flags.has(RegFlags::PERCPU) {
        s.push_str("percpu_");
    }
    if flags.has(RegFlags::RCU) {
        s.push_str("rcu_");
    }
    if flags.has(RegFlags::UNTRUSTED) {
        s.push_str("untrusted_");
    }
    if flags.has(RegFlags::TRUSTED) {
        s.push_str("trusted_");
    }
    s.push_str(ty.name());
    if flags.has(RegFlags::MAYBE_NULL) {
        s.push_str(if ty == RegType::BtfId {
            "or_null_"
        } else {
            "_or_null"
        });
    }
    s
}

/// The kind of one stack byte (`STACK_INVALID`, `STACK_SPILL`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SlotType {
    /// Never written.
    #[default]
    Invalid,
    /// Part of a spilled register.
    Spill,
    /// Written with unknown data.
    Misc,
    /// Written with zero.
    Zero,
    /// Part of an open-coded iterator (`STACK_ITER`).
    Iter,
}

impl SlotType {
    /// The kernel's one-letter code in logs.
    pub const fn letter(self) -> char {
        match self {
            SlotType::Invalid => '?',
            SlotType::Spill => 'r',
            SlotType::Misc => 'm',
            SlotType::Zero => '0',
            SlotType::Iter => 'i',
        }
    }
}

/// The state of an open-coded iterator (`enum bpf_iter_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum IterPhase {
    /// `BPF_ITER_STATE_ACTIVE`: `next` may still return an element.
    #[default]
    Active,
    /// `BPF_ITER_STATE_DRAINED`: `next` returned NULL and keeps doing so.
    Drained,
}

impl IterPhase {
    /// The kernel's name (`iter_state_str`).
    pub const fn name(self) -> &'static str {
        match self {
            IterPhase::Active => "active",
            IterPhase::Drained => "drained",
        }
    }
}

/// What a stack slot of an open-coded iterator knows (the `iter` part of
/// the kernel's `spilled_ptr` of a `STACK_ITER` slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct IterSlot {
    /// Host BTF id of the iterator struct (`struct bpf_iter_num`).
    pub btf_id: u32,
    /// Reference the iterator holds; set in its first (highest) slot only.
    pub ref_obj_id: u32,
    /// Active or drained.
    pub phase: IterPhase,
    /// Iterations forked so far (`iter.depth`): distinguishes loop
    /// iterations from an infinite loop; never compared for pruning.
    pub depth: u32,
}

/// One 8-byte stack slot (`struct bpf_stack_state`). `slot_type[i]` is the
/// byte at `-(8*spi) - 8 + i`... stored as the kernel does: index
/// `(slot - k) % 8` for byte offset `off = -slot - 1`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StackSlot {
    /// The spilled register (valid when the slot holds `Spill` bytes).
    pub spilled: Reg,
    /// The kind of each byte.
    pub slot_type: [SlotType; 8],
    /// The iterator (valid when the slot holds `Iter` bytes).
    pub iter: IterSlot,
}

impl StackSlot {
    /// `is_spilled_reg`: the last byte is a spill.
    pub fn is_spill(&self) -> bool {
        self.slot_type[7] == SlotType::Spill
    }

    /// Whether the slot belongs to an iterator (`STACK_ITER`).
    pub fn is_iter(&self) -> bool {
        self.slot_type[7] == SlotType::Iter
    }

    /// `is_stack_slot_special`: a spill or an iterator.
    pub fn is_special(&self) -> bool {
        matches!(self.slot_type[7], SlotType::Spill | SlotType::Iter)
    }

    /// `scrub_special_slot`: a data write over a spilled register or an
    /// iterator leaves unknown data in the bytes that held it.
    pub fn scrub_special(&mut self) {
        self.spilled = Reg::default();
        if self.is_special() {
            for b in self.slot_type.iter_mut() {
                if *b != SlotType::Invalid {
                    *b = SlotType::Misc;
                }
            }
        }
        self.iter = IterSlot::default();
    }
}

/// A function frame (`struct bpf_func_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// r0..r10.
    pub regs: [Reg; 11],
    /// Stack slots, `stack[spi]` covers `fp-8*(spi+1) .. fp-8*spi`.
    pub stack: Vec<StackSlot>,
    /// Instruction after the call that created this frame.
    pub callsite: usize,
    /// Depth of this frame, 0 for the main program.
    pub frameno: u32,
    /// Index of the subprogram.
    pub subprog: usize,
    /// Set for callback frames (bpf_loop and friends): exit returns into
    /// the helper call instead.
    pub callback: Option<CallbackKind>,
    /// Liveness of r0..r10 ([`LIVE_READ`], [`LIVE_WRITTEN`]); the
    /// kernel's `bpf_reg_state.live`, kept beside the values so that
    /// copying a register never copies its liveness.
    pub reg_live: [u8; 11],
    /// Liveness of each stack slot (`stack[spi].spilled_ptr.live`).
    pub stack_live: Vec<u8>,
    /// Identity of this function invocation: liveness only flows to the
    /// same frame of a parent state (the kernel's per-register parent
    /// pointers).
    pub uid: u32,
}

/// A remembered state's register or slot was read by some path after it
/// (`REG_LIVE_READ`).
pub const LIVE_READ: u8 = 1;
/// The register or slot was written since the previous checkpoint, so
/// reads do not reach further up (`REG_LIVE_WRITTEN`).
pub const LIVE_WRITTEN: u8 = 2;

/// Which helper a callback frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallbackKind {
    /// The helper id.
    pub helper: i32,
    /// Instruction index of the helper call.
    pub call_insn: usize,
}

impl Frame {
    /// A fresh frame with all registers `NOT_INIT` except `r10`.
    pub fn new(frameno: u32, subprog: usize, callsite: usize) -> Frame {
        let mut regs: [Reg; 11] = Default::default();
        regs[10] = Reg::ptr(RegType::Stack);
        regs[10].frameno = frameno;
        Frame {
            regs,
            stack: Vec::new(),
            callsite,
            frameno,
            subprog,
            callback: None,
            reg_live: [0; 11],
            stack_live: Vec::new(),
            uid: 0,
        }
    }

    /// Bytes of stack in use (`allocated_stack`).
    pub fn allocated(&self) -> usize {
        self.stack.len() * 8
    }

    /// Grows the stack to hold `size` bytes (`grow_stack_state`).
    pub fn grow(&mut self, size: usize) {
        let slots = size.div_ceil(8);
        if slots > self.stack.len() {
            self.stack.resize(slots, StackSlot::default());
            self.stack_live.resize(slots, 0);
        }
    }
}

/// An acquired reference (`struct bpf_reference_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefState {
    /// The reference id.
    pub id: u32,
    /// Instruction that acquired it.
    pub insn: usize,
}

/// One entry of a state's instruction history (`bpf_insn_hist_entry`):
/// how the walk reached `idx`, and what precision backtracking must know
/// about it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HistEntry {
    /// The instruction.
    pub idx: usize,
    /// The instruction executed before it.
    pub prev: usize,
    /// Stack slot `(frame, spi)` the instruction spilled to or filled
    /// from (`INSN_F_STACK_ACCESS`).
    pub stack: Option<(u32, u32)>,
    /// Scalars sharing an id that a conditional jump here refined
    /// together (`linked_regs`): `(frame, register or 16 + spi)`.
    pub linked: Vec<(u32, u32)>,
}

/// The whole abstract state on one path (`struct bpf_verifier_state`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    /// Frames, innermost last.
    pub frames: Vec<Frame>,
    /// Acquired references.
    pub refs: Vec<RefState>,
    /// Jumps and stack accesses since the last checkpoint
    /// (`insn_hist_start..insn_hist_end`).
    pub hist: Vec<HistEntry>,
    /// First instruction of the segment this state covers (`first_insn_idx`).
    pub first_insn: usize,
    /// Last instruction before the checkpoint (`last_insn_idx`).
    pub last_insn: usize,
    /// `may_goto` budget depth: how many `may_goto` jumps were assumed
    /// to fall through on this path (`may_goto_depth`).
    pub may_goto_depth: u32,
    /// Nested callback iterations (`callback_unroll_depth`).
    pub callback_unroll_depth: u32,
    /// Checkpoints on the way from the entry (`dfs_depth`).
    pub dfs_depth: u32,
}

impl State {
    /// Heap and inline bytes this state takes (an estimate from the containers'
    /// capacities), what [`crate::Limits::state_memory`] counts.
    pub fn approx_bytes(&self) -> u64 {
        use std::mem::size_of;
        let frames: usize = self
            .frames
            .iter()
            .map(|f| {
                size_of::<Frame>()
                    + f.stack.capacity() * size_of::<StackSlot>()
                    + f.stack_live.capacity()
            })
            .sum();
        (size_of::<State>()
            + frames
            + self.refs.capacity() * size_of::<RefState>()
            + self.hist.capacity() * size_of::<HistEntry>()) as u64
    }

    /// The innermost frame.
    pub fn cur(&self) -> &Frame {
        // `frames` is never empty: verification starts with one frame and
        // exit from frame 0 ends the path instead of popping.
        &self.frames[self.frames.len() - 1]
    }

    /// The innermost frame, mutably.
    pub fn cur_mut(&mut self) -> &mut Frame {
        let n = self.frames.len() - 1;
        &mut self.frames[n]
    }

    /// Index of the innermost frame.
    pub fn curframe(&self) -> usize {
        self.frames.len() - 1
    }
}

/// `print_reg_state`.
pub(crate) fn write_reg(
    out: &mut String,
    frameno: u32,
    reg: &Reg,
    map_lookup: &dyn Fn(u32) -> Option<(String, u32, u32)>,
    btf_name: &dyn Fn(u32) -> String,
) {
    let t = reg.ty;
    if t == RegType::Scalar {
        let _ = write!(out, "{}", reg.v.log().id(reg.id));
        return;
    }
    out.push_str(&reg.type_str());
    if t == RegType::BtfId {
        out.push_str(&btf_name(reg.btf_id));
    }
    if t == RegType::Stack {
        if frameno != reg.frameno {
            let _ = write!(out, "[{}]", reg.frameno);
        }
        if reg.v.var_off.is_const() {
            let _ = write!(
                out,
                "{}",
                Snum((reg.v.var_off.value() as i64).wrapping_add(i64::from(reg.off)))
            );
            return;
        }
    }
    out.push('(');
    let mut sep: &'static str = "";
    let item = |out: &mut String, sep: &mut &'static str, s: fmt::Arguments<'_>| {
        let _ = write!(out, "{sep}{s}");
        *sep = ",";
    };
    if reg.id != 0 {
        item(out, &mut sep, format_args!("id={}", reg.id));
    }
    if reg.ref_obj_id != 0 {
        item(out, &mut sep, format_args!("ref_obj_id={}", reg.ref_obj_id));
    }
    if matches!(t, RegType::ConstMap | RegType::MapValue | RegType::MapKey)
        && let Some((name, ks, vs)) = map_lookup(reg.map)
    {
        if !name.is_empty() {
            item(out, &mut sep, format_args!("map={name}"));
        }
        item(out, &mut sep, format_args!("ks={ks},vs={vs}"));
    }
    if reg.off != 0 {
        item(
            out,
            &mut sep,
            format_args!("off={}", Snum(i64::from(reg.off))),
        );
    }
    // The kernel prints `r=` for packet pointers only (`pkt_end()`).
    if t.is_pkt() || (t == RegType::PacketEnd && reg.range != 0) {
        item(
            out,
            &mut sep,
            format_args!("r={}", Unum(reg.range as u32 as u64)),
        );
    }
    if t == RegType::Mem {
        item(
            out,
            &mut sep,
            format_args!("sz={}", Unum(u64::from(reg.mem_size))),
        );
    }
    if reg.v.var_off.is_const() {
        if reg.v.var_off.value() != 0 {
            item(
                out,
                &mut sep,
                format_args!("imm={}", Snum(reg.v.var_off.value() as i64)),
            );
        }
    } else {
        let _ = write_scalar_ranges(out, &reg.v, &mut sep);
        if !reg.v.var_off.is_unknown() {
            let _ = write!(out, "{sep}var_off={}", reg.v.var_off);
        }
    }
    out.push(')');
}
