//! Calls: helpers checked against their prototypes (`check_helper_call`,
//! `check_func_arg`), bpf-to-bpf calls and returns (`check_func_call`,
//! `prepare_func_exit`).

use crate::env::{MAP_TYPE_PROG_ARRAY, MAP_TYPE_RINGBUF};
use crate::error::{E2BIG, EACCES, EFAULT, EINVAL, Reject, eacces, einval};
use crate::liveness::Loc;
use crate::proto::{Arg, ArgType, HelperProto, RetType, TypeFlags};
use crate::state::{CallbackKind, Frame, RefState, Reg, RegFlags, RegType, type_str};
use crate::verifier::{Flow, MAX_CALL_FRAMES, Res, Verifier};

/// `BPF_MAX_VAR_SIZ`.
const MAX_VAR_SIZ: u64 = 1 << 29;

/// What argument checking learns (`struct bpf_call_arg_meta`).
#[derive(Default)]
struct Meta {
    map: Option<u32>,
    mem_size: Option<u64>,
    release_ref: Option<u32>,
    release_regno: usize,
    /// The callback of an `ARG_PTR_TO_FUNC` argument (`subprogno`).
    callback: Option<usize>,
    /// The key of an array lookup when it is a known constant
    /// (`const_map_key`, -1 in the kernel when not).
    const_map_key: Option<u64>,
    /// The reference an argument carries (`ref_obj_id`): what a pointer
    /// cast helper's result shares.
    ref_obj_id: u32,
}

/// `BPF_FUNC_map_lookup_elem`.
const FUNC_MAP_LOOKUP_ELEM: i32 = 1;

/// `can_elide_value_nullness`: arrays and per-CPU arrays, whose in-range
/// entries always exist.
fn can_elide_value_nullness(map_type: u32) -> bool {
    // BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY
    matches!(map_type, 2 | 6)
}

/// The register types an argument accepts (`compatible_reg_types`).
fn compatible(arg: ArgType) -> &'static [(RegType, RegFlags)] {
    const MEM: &[(RegType, RegFlags)] = &[
        (RegType::Stack, RegFlags::NONE),
        (RegType::Packet, RegFlags::NONE),
        (RegType::PacketMeta, RegFlags::NONE),
        (RegType::MapKey, RegFlags::NONE),
        (RegType::MapValue, RegFlags::NONE),
        (RegType::Mem, RegFlags::NONE),
        (RegType::Mem, RegFlags::RINGBUF),
        (RegType::Buf, RegFlags::NONE),
        (RegType::BtfId, RegFlags::TRUSTED),
    ];
    const SCALAR: &[(RegType, RegFlags)] = &[(RegType::Scalar, RegFlags::NONE)];
    match arg {
        ArgType::PtrToMapKey | ArgType::PtrToMapValue | ArgType::PtrToMem => MEM,
        ArgType::ConstSize
        | ArgType::ConstSizeOrZero
        | ArgType::ConstAllocSizeOrZero
        | ArgType::Scalar => SCALAR,
        ArgType::ConstMapPtr => &[(RegType::ConstMap, RegFlags::NONE)],
        ArgType::PtrToCtx => &[(RegType::Ctx, RegFlags::NONE)],
        ArgType::PtrToSpinLock => &[(RegType::MapValue, RegFlags::NONE)],
        ArgType::PtrToBtfId => &[
            (RegType::BtfId, RegFlags::NONE),
            (RegType::BtfId, RegFlags::TRUSTED),
            (RegType::BtfId, RegFlags::RCU),
        ],
        ArgType::PtrToRingbufMem => &[(RegType::Mem, RegFlags::RINGBUF)],
        ArgType::PtrToFunc => &[(RegType::Func, RegFlags::NONE)],
        ArgType::PtrToStack => &[(RegType::Stack, RegFlags::NONE)],
        ArgType::PtrToConstStr => &[(RegType::MapValue, RegFlags::NONE)],
        ArgType::PtrToSockCommon => &[
            (RegType::SockCommon, RegFlags::NONE),
            (RegType::Socket, RegFlags::NONE),
            (RegType::TcpSock, RegFlags::NONE),
            (RegType::XdpSock, RegFlags::NONE),
        ],
        ArgType::PtrToSocket => &[(RegType::Socket, RegFlags::NONE)],
        ArgType::PtrToBtfIdSockCommon => &[
            (RegType::SockCommon, RegFlags::NONE),
            (RegType::Socket, RegFlags::NONE),
            (RegType::TcpSock, RegFlags::NONE),
            (RegType::XdpSock, RegFlags::NONE),
            (RegType::BtfId, RegFlags::NONE),
            (RegType::BtfId, RegFlags::TRUSTED),
        ],
        ArgType::DontCare | ArgType::Anything => &[],
    }
}

/// `bpf_helper_changes_pkt_data`: helpers that may move or resize the packet, after
/// which every packet pointer is stale.
fn changes_pkt_data(id: i32) -> bool {
    matches!(
        id,
        9 | 10 | 11 | 13 | 18 | 19 | 31 | 38 | 39 | 43 | 44 | 50 | 54 | 63 | 65 | 73..=76 | 90 | 91
    )
}

impl Verifier<'_> {
    /// `clear_all_pkt_pointers`: packet pointers in every frame's registers and
    /// spills become invalid (`mark_reg_invalid`).
    fn clear_all_pkt_pointers(&mut self) {
        let leaks = self.privileges().allow_ptr_leaks;
        let stale = |r: &Reg| r.ty.is_pkt() || r.ty == RegType::PacketEnd;
        let invalid = || {
            if leaks {
                Reg::unknown()
            } else {
                Reg::not_init()
            }
        };
        for f in &mut self.cur.frames {
            for r in f.regs.iter_mut() {
                if stale(r) {
                    *r = invalid();
                }
            }
            for slot in f.stack.iter_mut() {
                if slot.is_spill() && stale(&slot.spilled) {
                    slot.spilled = invalid();
                }
            }
        }
    }

    /// `get_constant_map_key`: the value of the `key_size`-byte key register
    /// `regno` points to, when it is a stack slot known to hold a constant
    /// (zero bytes, or a spilled constant scalar of exactly the key's size,
    /// which then becomes precise). `None` otherwise.
    fn constant_map_key(&mut self, regno: usize, key_size: u32) -> Option<u64> {
        if !self.privileges().bpf_capable {
            return None;
        }
        let key = self.reg(regno).clone();
        if key.ty != RegType::Stack || !key.v.var_off.is_const() {
            return None;
        }
        let stack_off = i64::from(key.off).wrapping_add(key.v.var_off.value() as i64);
        let slot = usize::try_from(-stack_off - 1).ok()?;
        let (spi, off) = (slot / 8, slot % 8);
        let fi = key.frameno as usize;
        let st = self.cur.frames.get(fi)?.stack.get(spi)?.clone();
        let run = |t: crate::state::SlotType| {
            st.slot_type[..=off]
                .iter()
                .rev()
                .take_while(|&&x| x == t)
                .count() as u32
        };
        if run(crate::state::SlotType::Zero) >= key_size {
            return Some(0);
        }
        if !st.is_spill() || st.spilled.ty != RegType::Scalar {
            return None;
        }
        if run(crate::state::SlotType::Spill) != key_size || !st.spilled.v.var_off.is_const() {
            return None;
        }
        self.mark_slot_precise(fi, spi);
        Some(st.spilled.v.var_off.value())
    }

    /// `check_helper_call`.
    pub(crate) fn check_helper_call(&mut self, pc: usize, id: i32) -> Res<Flow> {
        let name = self
            .env
            .helper_name(id)
            .unwrap_or_else(|| "unknown".to_owned());
        let proto = self.helper_proto(id);
        if structops_isa::helper_name(id).is_none() && proto.is_none() {
            return einval!("invalid func {name}#{id}");
        }
        let Some(proto) = proto else {
            return einval!("program of this type cannot use helper {name}#{id}");
        };
        if proto.gpl_only && !self.info.gpl_compatible {
            return einval!("cannot call GPL-restricted function from non-GPL compatible program");
        }
        if proto.might_sleep && !self.info.sleepable {
            return einval!("helper call might sleep in a non-sleepable prog");
        }
        let mut meta = Meta::default();
        for (i, arg) in proto.args.iter().enumerate() {
            self.check_func_arg(i, arg, &proto, &mut meta)?;
        }
        self.record_func_map(&meta, id)?;
        self.check_map_func_compat(&meta, &proto, &name)?;
        if crate::cfg::is_callback_helper(id) {
            self.push_callback_call(pc, id, &meta, &name)?;
        }
        if let Some(ref_id) = meta.release_ref {
            self.release_reference(ref_id, meta.release_regno)?;
        }
        if helper_is(id, &["tail_call"]) {
            self.check_reference_leak("tail_call")?;
        }
        // Caller-saved registers are clobbered.
        for r in 1..=5 {
            *self.reg_mut(r) = Reg::not_init();
        }
        if changes_pkt_data(id) {
            self.clear_all_pkt_pointers();
        }
        let mut maybe_null = proto.ret.flags.contains(TypeFlags::PTR_MAYBE_NULL);
        if id == FUNC_MAP_LOOKUP_ELEM
            && let Some(m) = meta.map.and_then(|m| self.maps.get(m as usize))
            && can_elide_value_nullness(m.map_type)
            && meta
                .const_map_key
                .is_some_and(|k| k < u64::from(m.max_entries))
        {
            // Linux 6.14+: an in-range constant key of an array always has a value.
            maybe_null = false;
        }
        let r0 = match proto.ret.ty {
            RetType::Integer => Reg::unknown(),
            RetType::Void => Reg::not_init(),
            RetType::PtrToMapValue => {
                let Some(m) = meta.map else {
                    return einval!("kernel subsystem misconfigured verifier");
                };
                let mut r = Reg::ptr(RegType::MapValue);
                r.map = m;
                if maybe_null {
                    r.flags = RegFlags::MAYBE_NULL;
                    r.id = self.next_id();
                }
                r
            }
            RetType::PtrToMem => {
                let Some(size) = meta.mem_size else {
                    return einval!("kernel subsystem misconfigured verifier");
                };
                let mut r = Reg::ptr(RegType::Mem);
                r.mem_size = size as u32;
                if proto.ret.flags.contains(TypeFlags::MEM_RINGBUF) {
                    r.flags = r.flags.with(RegFlags::RINGBUF);
                }
                if maybe_null {
                    r.flags = r.flags.with(RegFlags::MAYBE_NULL);
                    r.id = self.next_id();
                }
                r
            }
            RetType::PtrToSocket | RetType::PtrToSockCommon | RetType::PtrToTcpSock => {
                let ty = match proto.ret.ty {
                    RetType::PtrToSocket => RegType::Socket,
                    RetType::PtrToSockCommon => RegType::SockCommon,
                    _ => RegType::TcpSock,
                };
                let mut r = Reg::ptr(ty);
                if maybe_null {
                    r.flags = RegFlags::MAYBE_NULL;
                    r.id = self.next_id();
                }
                r
            }
            RetType::PtrToBtfId => {
                return einval!("helper returning a BTF pointer needs host BTF");
            }
        };
        let mut r0 = r0;
        let map_type = meta
            .map
            .and_then(|m| self.maps.get(m as usize))
            .map(|m| m.map_type);
        if is_ptr_cast_function(id) {
            // The result is the argument seen as another type: it shares its
            // reference (released together).
            r0.ref_obj_id = meta.ref_obj_id;
        } else if is_acquire_function(id, map_type) {
            // acquire_reference: the program must release it before exit.
            let rid = self.next_id();
            r0.id = rid;
            r0.ref_obj_id = rid;
            self.cur.refs.push(RefState { id: rid, insn: pc });
        }
        *self.reg_mut(0) = r0;
        Ok(Flow::Next(pc + 1))
    }

    /// The helper's prototype for this program: from the ops type's
    /// `get_func_proto` for struct_ops programs, else from the environment.
    fn helper_proto(&self, id: i32) -> Option<HelperProto> {
        match &self.struct_ops {
            Some(so) => so.ops.helper(id, so.member_idx),
            None => self.env.helper(id),
        }
    }

    /// `check_reg_type`.
    fn check_reg_type(&self, regno: usize, arg: &Arg) -> Res<()> {
        let reg = self.reg(regno);
        let types = compatible(arg.ty);
        if types.is_empty() {
            return Ok(());
        }
        let mut flags = reg.flags;
        if arg.flags.contains(TypeFlags::MEM_RDONLY) {
            flags = flags.without(RegFlags::RDONLY);
        }
        if arg.flags.contains(TypeFlags::PTR_MAYBE_NULL) {
            flags = flags.without(RegFlags::MAYBE_NULL);
        }
        if types.iter().any(|&(t, f)| t == reg.ty && f == flags) {
            return Ok(());
        }
        let expected: Vec<String> = types.iter().map(|&(t, f)| type_str(t, f)).collect();
        eacces!(
            "R{regno} type={} expected={}",
            reg.type_str(),
            expected.join(", ")
        )
    }

    /// `check_func_arg` for argument `i` (register `i + 1`).
    fn check_func_arg(
        &mut self,
        i: usize,
        arg: &Arg,
        proto: &HelperProto,
        meta: &mut Meta,
    ) -> Res<()> {
        let regno = i + 1;
        if arg.ty == ArgType::DontCare {
            return Ok(());
        }
        self.check_src(regno)?;
        if arg.ty == ArgType::Anything {
            if self.is_pointer_value(regno) {
                return eacces!("R{regno} leaks addr into helper function");
            }
            return Ok(());
        }
        let reg = self.reg(regno).clone();
        let maybe_null_arg = arg.flags.contains(TypeFlags::PTR_MAYBE_NULL);
        let skip_type = reg.is_null() && maybe_null_arg;
        if !skip_type {
            self.check_reg_type(regno, arg)?;
        }
        // Release arguments carry the reference; others must be unmodified
        // where the kernel requires it.
        if arg.flags.contains(TypeFlags::OBJ_RELEASE) {
            if reg.ref_obj_id == 0 && !reg.is_null() {
                return einval!("R{regno} must be referenced when passed to release function");
            }
            if reg.off != 0 {
                return einval!(
                    "R{regno} must have zero offset when passed to release func or trusted arg to kfunc"
                );
            }
            if !reg.v.var_off.equals_const(0) {
                return eacces!(
                    "variable {} access var_off={} disallowed",
                    reg.type_str(),
                    reg.v.var_off
                );
            }
            meta.release_ref = Some(reg.ref_obj_id);
            meta.release_regno = regno;
        }
        if reg.ref_obj_id != 0 {
            if meta.ref_obj_id != 0 {
                return Err(Reject::new(
                    EFAULT,
                    format!(
                        "verifier internal error: more than one arg with ref_obj_id R{regno} {} {}",
                        reg.ref_obj_id, meta.ref_obj_id
                    ),
                ));
            }
            meta.ref_obj_id = reg.ref_obj_id;
        }
        match arg.ty {
            ArgType::ConstMapPtr => {
                meta.map = Some(reg.map);
            }
            ArgType::PtrToMapKey => {
                let Some(m) = meta.map else {
                    return eacces!("invalid map_ptr to access map->key");
                };
                let ks = self.maps.get(m as usize).map_or(0, |m| m.key_size);
                self.check_helper_mem_access(regno, u64::from(ks), false, false, false)?;
                let elide = self
                    .maps
                    .get(m as usize)
                    .is_some_and(|m| can_elide_value_nullness(m.map_type));
                if elide {
                    meta.const_map_key = self.constant_map_key(regno, ks);
                }
            }
            ArgType::PtrToMapValue => {
                if skip_type {
                    return Ok(());
                }
                let Some(m) = meta.map else {
                    return eacces!("invalid map_ptr to access map->value");
                };
                let vs = self.maps.get(m as usize).map_or(0, |m| m.value_size);
                let write = arg.flags.contains(TypeFlags::MEM_UNINIT);
                self.check_helper_mem_access(regno, u64::from(vs), false, write, write)?;
            }
            ArgType::PtrToMem => {
                // Checked with the size argument that follows.
            }
            ArgType::ConstSize | ArgType::ConstSizeOrZero => {
                let zero_ok = arg.ty == ArgType::ConstSizeOrZero;
                let mem_arg = proto
                    .args
                    .get(i.wrapping_sub(1))
                    .copied()
                    .unwrap_or(Arg::DONTCARE);
                self.check_mem_size_reg(regno, zero_ok, &mem_arg)?;
            }
            ArgType::ConstAllocSizeOrZero => {
                if !reg.v.var_off.is_const() {
                    return eacces!("R{regno} is not a known constant'");
                }
                self.mark_precise(regno)?;
                meta.mem_size = Some(reg.v.var_off.value());
            }
            ArgType::PtrToCtx => {
                self.check_ptr_off_reg(regno, &reg, false)?;
            }
            ArgType::PtrToBtfIdSockCommon if !skip_type && reg.ty == RegType::BtfId => {
                // The struct must start with `struct sock_common` (the
                // prototype's `arg_btf_id`, else the compatible types' one).
                let want = self.env.helper_arg_btf_id(proto.id, i).or_else(|| {
                    self.env.host_btf().and_then(|b| {
                        b.find_by_name_kind("sock_common", structops_btf::Kind::Struct)
                    })
                });
                if let (Some(want), Some(btf)) = (want, self.env.host_btf())
                    && !crate::btf_ptr::struct_ids_match(btf, reg.btf_id, reg.off, want, false)
                {
                    let name = |id: u32| {
                        btf.ty(id)
                            .ok()
                            .and_then(|t| btf.name(t.name_off).ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    return eacces!(
                        "R{regno} is of type {} but {} is expected",
                        name(reg.btf_id),
                        name(want)
                    );
                }
                self.check_ptr_off_reg(regno, &reg, true)?;
            }
            ArgType::PtrToBtfId if !skip_type => {
                // check_reg_type for ARG_PTR_TO_BTF_ID: the struct must match.
                if let (Some(want), Some(btf)) =
                    (self.env.helper_arg_btf_id(proto.id, i), self.env.host_btf())
                    && !crate::btf_ptr::struct_ids_match(btf, reg.btf_id, reg.off, want, false)
                {
                    let name = |id: u32| {
                        btf.ty(id)
                            .ok()
                            .and_then(|t| btf.name(t.name_off).ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    return eacces!(
                        "R{regno} is of type {} but {} is expected",
                        name(reg.btf_id),
                        name(want)
                    );
                }
                self.check_ptr_off_reg(regno, &reg, true)?;
            }
            ArgType::PtrToConstStr => {
                let Some(map) = self.maps.get(reg.map as usize) else {
                    return eacces!("R{regno} does not point to a readonly map'");
                };
                if map.frozen_value.is_none() || !map.rdonly_prog {
                    return eacces!("R{regno} does not point to a readonly map'");
                }
                if !reg.v.var_off.is_const() {
                    return eacces!("R{regno} is not a constant address'");
                }
                let start = (i64::from(reg.off) + reg.v.var_off.value() as i64) as usize;
                let ok = map
                    .frozen_value
                    .as_ref()
                    .and_then(|b| b.get(start..))
                    .is_some_and(|b| b.contains(&0));
                if !ok {
                    return eacces!("string is not zero-terminated");
                }
            }
            ArgType::PtrToSpinLock => {
                return einval!("bpf_spin_lock is not supported yet");
            }
            ArgType::PtrToFunc => {
                meta.callback = Some(reg.subprog as usize);
            }
            _ => {}
        }
        Ok(())
    }

    /// `check_mem_size_reg`: the size register for the memory argument
    /// in the register before it.
    pub(crate) fn check_mem_size_reg(
        &mut self,
        regno: usize,
        zero_ok: bool,
        mem_arg: &Arg,
    ) -> Res<()> {
        let reg = self.reg(regno).clone();
        // The helper writes the memory (the direction the bounds message names); only
        // with a constant size does it count as initialized afterwards (raw mode).
        let dir_write = mem_arg.flags.contains(TypeFlags::MEM_UNINIT);
        let write = dir_write && reg.v.var_off.is_const();
        if reg.v.smin < 0 {
            return eacces!(
                "R{regno} min value is negative, either use unsigned or 'var &= const'"
            );
        }
        if reg.v.umin == 0 && !zero_ok {
            return eacces!(
                "R{regno} invalid zero-sized read: u64=[{},{}]",
                reg.v.umin as i64,
                reg.v.umax
            );
        }
        if reg.v.umax >= MAX_VAR_SIZ {
            return eacces!(
                "R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"
            );
        }
        let mem = regno - 1;
        let mem_reg = self.reg(mem).clone();
        if mem_reg.is_null() && mem_arg.flags.contains(TypeFlags::PTR_MAYBE_NULL) {
            if reg.v.umax == 0 {
                self.mark_precise(regno)?;
                return Ok(());
            }
            return eacces!("R{mem} type=scalar expected=fp");
        }
        self.check_helper_mem_access(mem, reg.v.umax, zero_ok, write, dir_write)?;
        self.mark_precise(regno)
    }

    /// `check_helper_mem_access`: `size` bytes behind register `regno`.
    pub(crate) fn check_helper_mem_access(
        &mut self,
        regno: usize,
        size: u64,
        zero_ok: bool,
        write: bool,
        dir_write: bool,
    ) -> Res<()> {
        let reg = self.reg(regno).clone();
        let size32 = size as u32;
        match reg.ty {
            RegType::Packet | RegType::PacketMeta => {
                self.check_packet_access(regno, reg.off, size32, zero_ok)
            }
            RegType::MapKey => {
                if write {
                    return eacces!("R{regno} cannot write into {}", reg.type_str());
                }
                let ks = self.maps.get(reg.map as usize).map_or(0, |m| m.key_size);
                self.check_mem_region(regno, reg.off, size32, ks, false)
            }
            RegType::MapValue => {
                let Some(map) = self.maps.get(reg.map as usize).cloned() else {
                    return Err(Reject::new(EACCES, "map pointer without a map"));
                };
                if write && map.rdonly_prog {
                    return eacces!(
                        "write into map forbidden, value_size={} off={} size={}",
                        map.value_size,
                        reg.off,
                        size
                    );
                }
                self.check_mem_region(regno, reg.off, size32, map.value_size, zero_ok)
            }
            RegType::Mem => {
                if write && reg.flags.has(RegFlags::RDONLY) {
                    return eacces!("R{regno} cannot write into {}", reg.type_str());
                }
                self.check_mem_region(regno, reg.off, size32, reg.mem_size, zero_ok)
            }
            RegType::Stack => {
                self.check_stack_range(regno, reg.off, size32, zero_ok, write, dir_write)
            }
            _ => {
                if zero_ok && size == 0 && reg.is_null() {
                    return Ok(());
                }
                eacces!("R{regno} type={} expected=fp", reg.type_str())
            }
        }
    }

    /// `record_func_map`: programs may not modify a map they may only read
    /// (`BPF_F_RDONLY_PROG`).
    fn record_func_map(&self, meta: &Meta, id: i32) -> Res<()> {
        let Some(map) = meta.map.and_then(|m| self.maps.get(m as usize)) else {
            return Ok(());
        };
        let writes = helper_is(
            id,
            &[
                "map_delete_elem",
                "map_update_elem",
                "map_push_elem",
                "map_pop_elem",
            ],
        );
        if writes && map.rdonly_prog {
            return eacces!("write into map forbidden");
        }
        Ok(())
    }

    /// `check_map_func_compatibility`: the map type must suit the helper,
    /// checked from both sides (which helpers a map type takes, and which
    /// map types a helper takes).
    fn check_map_func_compat(&self, meta: &Meta, proto: &HelperProto, name: &str) -> Res<()> {
        let Some(m) = meta.map else {
            return Ok(());
        };
        let Some(map) = self.maps.get(m as usize) else {
            return Ok(());
        };
        let id = proto.id;
        if id == 12 && !matches!(map.map_type, MAP_TYPE_PROG_ARRAY | MAP_TYPE_RINGBUF) {
            return einval!("expected prog array map for tail call");
        }
        let func = structops_isa::helper_name(id)
            .and_then(|n| n.strip_prefix("bpf_"))
            .unwrap_or("");
        if !map_type_accepts(map.map_type, func) || !func_accepts(func, map.map_type) {
            return einval!(
                "cannot pass map_type {} into func {name}#{id}",
                map.map_type
            );
        }
        Ok(())
    }

    /// `check_reference_leak`: every acquired reference must have been
    /// released before `what` (exit, a tail call, `LD_ABS`).
    pub(crate) fn check_reference_leak(&mut self, what: &str) -> Res<()> {
        if self.cur.refs.is_empty() {
            return Ok(());
        }
        let refs = self.cur.refs.clone();
        for r in refs {
            self.verbose(&format!(
                "Unreleased reference id={} alloc_insn={}\n",
                r.id, r.insn
            ));
        }
        einval!("{what} would lead to reference leak")
    }

    /// `release_reference`: drop the reference and invalidate every
    /// register and spill holding it.
    pub(crate) fn release_reference(&mut self, id: u32, regno: usize) -> Res<()> {
        let Some(pos) = self.cur.refs.iter().position(|r| r.id == id) else {
            return eacces!("R{regno} must be referenced when passed to release function");
        };
        self.cur.refs.remove(pos);
        let leaks = self.privileges().allow_ptr_leaks;
        let invalid = || {
            if leaks {
                Reg::unknown()
            } else {
                Reg::not_init()
            }
        };
        for f in self.cur.frames.iter_mut() {
            for r in f.regs.iter_mut() {
                if r.ref_obj_id == id {
                    *r = invalid();
                }
            }
            for s in f.stack.iter_mut() {
                if s.is_spill() && s.spilled.ref_obj_id == id {
                    s.spilled = invalid();
                    for b in s.slot_type.iter_mut() {
                        *b = crate::state::SlotType::Misc;
                    }
                }
            }
        }
        Ok(())
    }

    /// `check_func_call` for a static subprogram.
    pub(crate) fn check_func_call(&mut self, pc: usize, offset: i32) -> Res<Flow> {
        let target = (pc as i64 + i64::from(offset) + 1) as usize;
        let curframe = self.cur.curframe();
        if curframe + 1 >= MAX_CALL_FRAMES {
            return Err(Reject::new(
                E2BIG,
                format!("the call stack of {} frames is too deep", curframe + 2),
            ));
        }
        let sub = self.cfg.subprog_of(target);
        let caller_sub = self.cur.cur().subprog;
        if let Some(c) = self.callees.get_mut(caller_sub)
            && !c.contains(&sub)
        {
            c.push(sub);
        }
        let mut callee = Frame::new(curframe as u32 + 1, sub, pc);
        callee.uid = self.next_frame_uid();
        for r in 1..=5 {
            callee.regs[r] = self.reg(r).clone();
            // The callee's arguments come from the caller's registers; a
            // read in the callee is a read of those (kept simple: all five
            // count as read, as the kernel's static liveness has it).
            if self.reg(r).ty != RegType::NotInit {
                self.mark_read(curframe, Loc::Reg(r));
            }
        }
        for r in 0..=5 {
            *self.reg_mut(r) = Reg::not_init();
        }
        self.cur.frames.push(callee);
        if self.log_level > 0 {
            let s = self.state_text();
            self.verbose(&format!("caller:\n callee:{s}\n"));
        }
        Ok(Flow::Next(target))
    }

    /// `prepare_func_exit`: back to the caller with `r0`, or for a
    /// callback back to the helper call that runs it again.
    pub(crate) fn prepare_func_exit(&mut self) -> Res<Flow> {
        let r0 = self.reg(0).clone();
        if r0.ty == RegType::Stack {
            return einval!("cannot return stack pointer to the caller");
        }
        let frame = self.cur.curframe();
        let in_callback = self.cur.cur().callback.is_some();
        if in_callback {
            if r0.ty != RegType::Scalar {
                return eacces!("R0 not a scalar value");
            }
            self.mark_read(frame, Loc::Reg(0));
            self.mark_precise(0)?;
            // bpf_callback_t returns 64 bits; every callback-calling
            // helper we know takes 0 or 1 (`retval_range(0, 1)`).
            if r0.v.smin < 0 || r0.v.smax > 1 {
                return Err(Reject::new(
                    EINVAL,
                    invalid_scalar_msg(&r0, "At callback return", "R0", 0, 1),
                ));
            }
        } else {
            // The caller may read r0 after the return.
            self.mark_read(frame, Loc::Reg(0));
        }
        let Some(callee) = self.cur.frames.pop() else {
            return Err(Reject::new(EINVAL, "exit from no frame"));
        };
        let next = if in_callback {
            callee.callsite
        } else {
            self.cur.cur_mut().regs[0] = r0;
            let f = self.cur.curframe();
            self.mark_written(f, Loc::Reg(0));
            callee.callsite + 1
        };
        if self.log_level > 0 {
            let s = self.state_text();
            self.verbose(&format!(
                "returning from callee:\n to caller at {next}:{s}\n"
            ));
        }
        if in_callback && let Some(prev) = self.find_prev_entry(next, false) {
            self.widen_imprecise_scalars(prev);
        }
        Ok(Flow::Next(next))
    }

    /// `push_callback_call`: the helper at `pc` calls `meta.callback`; its
    /// body is explored as a separate branch that starts in a new frame
    /// and, at its exit, comes back to this call (`prepare_func_exit`), so
    /// the calls repeat until the state at the call converges.
    fn push_callback_call(&mut self, pc: usize, id: i32, meta: &Meta, name: &str) -> Res<()> {
        let Some(sub) = meta.callback else {
            return einval!("kernel subsystem misconfigured verifier");
        };
        let curframe = self.cur.curframe();
        if curframe + 1 >= MAX_CALL_FRAMES {
            return Err(Reject::new(
                E2BIG,
                format!("the call stack of {} frames is too deep", curframe + 2),
            ));
        }
        let Some(&start) = self.cfg.subprogs.get(sub) else {
            return einval!("invalid callback for {name}#{id}");
        };
        let caller_sub = self.cur.cur().subprog;
        if let Some(c) = self.callees.get_mut(caller_sub)
            && !c.contains(&sub)
        {
            c.push(sub);
        }
        let mut callee = Frame::new(curframe as u32 + 1, sub, pc);
        callee.uid = self.next_frame_uid();
        callee.callback = Some(CallbackKind {
            helper: id,
            call_insn: pc,
        });
        let caller = self.cur.cur();
        match id {
            // bpf_loop(nr_loops, callback_fn, callback_ctx, flags):
            // callback_fn(u32 index, void *ctx) (`set_loop_callback_state`).
            HELPER_LOOP => {
                callee.regs[1] = Reg::unknown();
                callee.regs[2] = caller.regs[3].clone();
            }
            // bpf_for_each_map_elem(map, callback_fn, ctx, flags):
            // callback_fn(map, key, value, ctx)
            // (`map_set_for_each_callback_args`).
            HELPER_FOR_EACH_MAP_ELEM => {
                let map = caller.regs[1].clone();
                let mut key = Reg::ptr(RegType::MapKey);
                key.map = map.map;
                let mut value = Reg::ptr(RegType::MapValue);
                value.map = map.map;
                callee.regs[1] = map;
                callee.regs[2] = key;
                callee.regs[3] = value;
                callee.regs[4] = caller.regs[3].clone();
            }
            _ => {
                return einval!("callback-calling helper {name}#{id} is not supported yet");
            }
        }
        for r in 1..=5 {
            callee.reg_live[r] = crate::state::LIVE_WRITTEN;
        }
        let mut st = self.cur.clone();
        st.frames.push(callee);
        st.callback_unroll_depth += 1;
        self.push_branch(st, start, pc)
    }
}

/// `BPF_FUNC_loop`.
const HELPER_LOOP: i32 = 181;
/// `BPF_FUNC_for_each_map_elem`.
const HELPER_FOR_EACH_MAP_ELEM: i32 = 164;

/// `verbose_invalid_scalar`: `CTX the register R has smin=.. smax=..
/// should have been in [MIN, MAX]`, as Linux 6.18 words it.
pub(crate) fn invalid_scalar_msg(reg: &Reg, ctx: &str, name: &str, min: i32, max: i32) -> String {
    let mut s = format!("{ctx} the register {name} has");
    let mut unknown = true;
    if reg.v.smin > i64::MIN {
        s.push_str(&format!(" smin={}", reg.v.smin));
        unknown = false;
    }
    if reg.v.smax < i64::MAX {
        s.push_str(&format!(" smax={}", reg.v.smax));
        unknown = false;
    }
    if unknown {
        s.push_str(" unknown scalar value");
    }
    s.push_str(&format!(" should have been in [{min}, {max}]"));
    s
}

/// Whether helper `id` is one of `names` (kernel names without `bpf_`).
fn helper_is(id: i32, names: &[&str]) -> bool {
    structops_isa::helper_name(id)
        .and_then(|n| n.strip_prefix("bpf_"))
        .is_some_and(|n| names.contains(&n))
}

/// `is_acquire_function`: helpers whose result is a reference the program
/// must release (socket lookups, ring buffer reservations, `kptr_xchg`,
/// lookups in socket maps).
fn is_acquire_function(id: i32, map_type: Option<u32>) -> bool {
    if helper_is(
        id,
        &[
            "sk_lookup_tcp",
            "sk_lookup_udp",
            "skc_lookup_tcp",
            "ringbuf_reserve",
            "kptr_xchg",
        ],
    ) {
        return true;
    }
    id == FUNC_MAP_LOOKUP_ELEM && matches!(map_type, Some(map_type::SOCKMAP | map_type::SOCKHASH))
}

/// `is_ptr_cast_function`: helpers that return their socket argument as
/// another type (same object, same reference).
fn is_ptr_cast_function(id: i32) -> bool {
    helper_is(
        id,
        &[
            "tcp_sock",
            "sk_fullsock",
            "skc_to_tcp_sock",
            "skc_to_tcp6_sock",
            "skc_to_udp6_sock",
            "skc_to_mptcp_sock",
            "skc_to_tcp_timewait_sock",
            "skc_to_tcp_request_sock",
        ],
    )
}

/// `enum bpf_map_type` numbers the compatibility table names.
mod map_type {
    pub const PROG_ARRAY: u32 = 3;
    pub const PERF_EVENT_ARRAY: u32 = 4;
    pub const PERCPU_HASH: u32 = 5;
    pub const PERCPU_ARRAY: u32 = 6;
    pub const STACK_TRACE: u32 = 7;
    pub const CGROUP_ARRAY: u32 = 8;
    pub const LRU_PERCPU_HASH: u32 = 10;
    pub const ARRAY_OF_MAPS: u32 = 12;
    pub const HASH_OF_MAPS: u32 = 13;
    pub const DEVMAP: u32 = 14;
    pub const SOCKMAP: u32 = 15;
    pub const CPUMAP: u32 = 16;
    pub const XSKMAP: u32 = 17;
    pub const SOCKHASH: u32 = 18;
    pub const CGROUP_STORAGE: u32 = 19;
    pub const REUSEPORT_SOCKARRAY: u32 = 20;
    pub const PERCPU_CGROUP_STORAGE: u32 = 21;
    pub const QUEUE: u32 = 22;
    pub const STACK: u32 = 23;
    pub const SK_STORAGE: u32 = 24;
    pub const DEVMAP_HASH: u32 = 25;
    pub const RINGBUF: u32 = 27;
    pub const INODE_STORAGE: u32 = 28;
    pub const TASK_STORAGE: u32 = 29;
    pub const BLOOM_FILTER: u32 = 30;
    pub const USER_RINGBUF: u32 = 31;
    pub const CGRP_STORAGE: u32 = 32;
}

/// The map side of `check_map_func_compatibility`: the helpers a map type
/// may be passed to (`func` is the helper's name without `bpf_`).
fn map_type_accepts(t: u32, func: &str) -> bool {
    use map_type::*;
    let only = |names: &[&str]| names.contains(&func);
    match t {
        PROG_ARRAY => only(&["tail_call"]),
        PERF_EVENT_ARRAY => only(&[
            "perf_event_read",
            "perf_event_output",
            "skb_output",
            "perf_event_read_value",
            "xdp_output",
        ]),
        RINGBUF => only(&[
            "ringbuf_output",
            "ringbuf_reserve",
            "ringbuf_query",
            "ringbuf_reserve_dynptr",
            "ringbuf_submit_dynptr",
            "ringbuf_discard_dynptr",
        ]),
        USER_RINGBUF => only(&["user_ringbuf_drain"]),
        STACK_TRACE => only(&["get_stackid"]),
        CGROUP_ARRAY => only(&["skb_under_cgroup", "current_task_under_cgroup"]),
        CGROUP_STORAGE | PERCPU_CGROUP_STORAGE => only(&["get_local_storage"]),
        DEVMAP | DEVMAP_HASH | XSKMAP => only(&["redirect_map", "map_lookup_elem"]),
        CPUMAP => only(&["redirect_map"]),
        ARRAY_OF_MAPS | HASH_OF_MAPS => only(&["map_lookup_elem"]),
        SOCKMAP => only(&[
            "sk_redirect_map",
            "sock_map_update",
            "msg_redirect_map",
            "sk_select_reuseport",
            "map_lookup_elem",
            "map_update_elem",
            "map_delete_elem",
        ]),
        SOCKHASH => only(&[
            "sk_redirect_hash",
            "sock_hash_update",
            "msg_redirect_hash",
            "sk_select_reuseport",
            "map_lookup_elem",
            "map_update_elem",
            "map_delete_elem",
        ]),
        REUSEPORT_SOCKARRAY => only(&["sk_select_reuseport"]),
        QUEUE | STACK => only(&["map_peek_elem", "map_pop_elem", "map_push_elem"]),
        SK_STORAGE => only(&["sk_storage_get", "sk_storage_delete", "kptr_xchg"]),
        INODE_STORAGE => only(&["inode_storage_get", "inode_storage_delete", "kptr_xchg"]),
        TASK_STORAGE => only(&["task_storage_get", "task_storage_delete", "kptr_xchg"]),
        CGRP_STORAGE => only(&["cgrp_storage_get", "cgrp_storage_delete", "kptr_xchg"]),
        BLOOM_FILTER => only(&["map_peek_elem", "map_push_elem"]),
        _ => true,
    }
}

/// The helper side of `check_map_func_compatibility`: the map types a
/// helper takes.
fn func_accepts(func: &str, t: u32) -> bool {
    use map_type::*;
    let one_of = |types: &[u32]| types.contains(&t);
    match func {
        "tail_call" => t == PROG_ARRAY,
        "perf_event_read"
        | "perf_event_output"
        | "perf_event_read_value"
        | "skb_output"
        | "xdp_output" => t == PERF_EVENT_ARRAY,
        "ringbuf_output"
        | "ringbuf_reserve"
        | "ringbuf_query"
        | "ringbuf_reserve_dynptr"
        | "ringbuf_submit_dynptr"
        | "ringbuf_discard_dynptr" => t == RINGBUF,
        "user_ringbuf_drain" => t == USER_RINGBUF,
        "get_stackid" => t == STACK_TRACE,
        "current_task_under_cgroup" | "skb_under_cgroup" => t == CGROUP_ARRAY,
        "redirect_map" => one_of(&[DEVMAP, DEVMAP_HASH, CPUMAP, XSKMAP]),
        "sk_redirect_map" | "msg_redirect_map" | "sock_map_update" => t == SOCKMAP,
        "sk_redirect_hash" | "msg_redirect_hash" | "sock_hash_update" => t == SOCKHASH,
        "get_local_storage" => one_of(&[CGROUP_STORAGE, PERCPU_CGROUP_STORAGE]),
        "sk_select_reuseport" => one_of(&[REUSEPORT_SOCKARRAY, SOCKMAP, SOCKHASH]),
        "map_pop_elem" => one_of(&[QUEUE, STACK]),
        "map_peek_elem" | "map_push_elem" => one_of(&[QUEUE, STACK, BLOOM_FILTER]),
        "map_lookup_percpu_elem" => one_of(&[PERCPU_ARRAY, PERCPU_HASH, LRU_PERCPU_HASH]),
        "sk_storage_get" | "sk_storage_delete" => t == SK_STORAGE,
        "inode_storage_get" | "inode_storage_delete" => t == INODE_STORAGE,
        "task_storage_get" | "task_storage_delete" => t == TASK_STORAGE,
        "cgrp_storage_get" | "cgrp_storage_delete" => t == CGRP_STORAGE,
        _ => true,
    }
}
