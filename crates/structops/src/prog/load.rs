//! `BPF_PROG_LOAD`: the checks of the kernel's `bpf_prog_load` and of the structural
//! part of `bpf_check` (`check_btf_info_early`, `add_subprog_and_kfunc`,
//! `check_subprogs`, `check_btf_info`, `resolve_pseudo_ldimm64`, `check_attach_btf_id`,
//! `bpf_check_tail_call`), in that order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use structops_btf::ext::{FuncInfo, LineInfo};
use structops_btf::{BTF_MAX_TYPE, Btf, Kind, TypeKind};
use structops_isa::opcode as oc;
use structops_isa::{Imm64, Insn, Op, Program, decode_at};
use structops_vm::Code;

use super::tag::prog_tag;
use super::{
    AttachType, BPF_COMPLEXITY_LIMIT_INSNS, BPF_F_ANY_ALIGNMENT, BPF_F_SLEEPABLE,
    BPF_F_STRICT_ALIGNMENT, BPF_F_TEST_REG_INVARIANTS, BPF_F_TEST_RND_HI32, BPF_F_TEST_STATE_FREQ,
    BPF_F_TOKEN_FD, BPF_F_XDP_DEV_BOUND_ONLY, BPF_F_XDP_HAS_FRAGS, BPF_MAXINSNS, MAX_USED_MAPS,
    MapRef, Prog, ProgBody, ProgHandle, ProgInfo, ProgLoadAttr, ProgType, Verification,
    VerifiedProgram, prog_alloc_size, prog_map_compatible,
};
use crate::btf_obj::BtfObject;
use crate::errno::Errno;
use crate::fd::FdObject;
use crate::maps::{Map, MapType, obj_name};
use crate::memcg::Charge;
use crate::object::{AccessMode, Handle, ID_LIMIT};
use crate::runtime::Runtime;

/// Flags `prog_load` accepts.
const PROG_FLAGS_MASK: u32 = BPF_F_STRICT_ALIGNMENT
    | BPF_F_ANY_ALIGNMENT
    | BPF_F_TEST_STATE_FREQ
    | BPF_F_SLEEPABLE
    | BPF_F_TEST_RND_HI32
    | BPF_F_XDP_HAS_FRAGS
    | BPF_F_XDP_DEV_BOUND_ONLY
    | BPF_F_TEST_REG_INVARIANTS
    | BPF_F_TOKEN_FD;

/// `MIN_BPF_FUNCINFO_SIZE` / `sizeof(struct bpf_func_info)`.
const FUNC_INFO_SIZE: usize = 8;
/// `sizeof(struct bpf_line_info)` (also the minimum record size).
const LINE_INFO_SIZE: usize = 16;
/// `MAX_FUNCINFO_REC_SIZE`.
const MAX_FUNCINFO_REC_SIZE: u32 = 252;
/// `BPF_MAX_VAR_OFF`.
const BPF_MAX_VAR_OFF: u32 = 1 << 29;
/// `MAX_KFUNC_DESCS`.
const MAX_KFUNC_DESCS: usize = 256;
/// The kernel copies at most this many license bytes.
const LICENSE_MAX: usize = 127;

/// `license_is_gpl_compatible`.
pub(crate) fn license_is_gpl_compatible(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

/// `is_net_admin_prog_type`.
fn is_net_admin_prog_type(t: ProgType) -> bool {
    matches!(
        t,
        ProgType::SCHED_CLS
            | ProgType::SCHED_ACT
            | ProgType::XDP
            | ProgType::LWT_IN
            | ProgType::LWT_OUT
            | ProgType::LWT_XMIT
            | ProgType::LWT_SEG6LOCAL
            | ProgType::SK_SKB
            | ProgType::SK_MSG
            | ProgType::FLOW_DISSECTOR
            | ProgType::CGROUP_DEVICE
            | ProgType::CGROUP_SOCK
            | ProgType::CGROUP_SOCK_ADDR
            | ProgType::CGROUP_SOCKOPT
            | ProgType::CGROUP_SYSCTL
            | ProgType::SOCK_OPS
            | ProgType::EXT
            | ProgType::NETFILTER
    )
}

/// `is_perfmon_prog_type`.
fn is_perfmon_prog_type(t: ProgType) -> bool {
    matches!(
        t,
        ProgType::KPROBE
            | ProgType::TRACEPOINT
            | ProgType::PERF_EVENT
            | ProgType::RAW_TRACEPOINT
            | ProgType::RAW_TRACEPOINT_WRITABLE
            | ProgType::TRACING
            | ProgType::LSM
            | ProgType::STRUCT_OPS
            | ProgType::EXT
    )
}

/// `find_prog_type`: the types a kernel built like the reference machines knows
/// (`CONFIG_BPF_LIRC_MODE2` is off there).
fn known_prog_type(t: ProgType) -> bool {
    (1..=32).contains(&t.0) && t != ProgType::LIRC_MODE2
}

/// `bpf_prog_load_check_attach`.
fn check_attach(
    t: ProgType,
    expected: AttachType,
    has_attach_btf: bool,
    btf_id: u32,
    has_dst_prog: bool,
) -> Result<(), Errno> {
    if btf_id != 0 {
        if btf_id > BTF_MAX_TYPE {
            return Err(Errno::EINVAL);
        }
        if !has_attach_btf && !has_dst_prog {
            return Err(Errno::EINVAL);
        }
        if !matches!(
            t,
            ProgType::TRACING | ProgType::LSM | ProgType::STRUCT_OPS | ProgType::EXT
        ) {
            return Err(Errno::EINVAL);
        }
    }
    if has_attach_btf && (btf_id == 0 || has_dst_prog) {
        return Err(Errno::EINVAL);
    }
    if has_dst_prog && t != ProgType::TRACING && t != ProgType::EXT {
        return Err(Errno::EINVAL);
    }
    let ok = |list: &[AttachType]| {
        if list.contains(&expected) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    };
    match t {
        ProgType::CGROUP_SOCK => ok(&[
            AttachType::CGROUP_INET_SOCK_CREATE,
            AttachType::CGROUP_INET_SOCK_RELEASE,
            AttachType::CGROUP_INET4_POST_BIND,
            AttachType::CGROUP_INET6_POST_BIND,
        ]),
        ProgType::CGROUP_SOCK_ADDR => ok(&[
            AttachType::CGROUP_INET4_BIND,
            AttachType::CGROUP_INET6_BIND,
            AttachType::CGROUP_INET4_CONNECT,
            AttachType::CGROUP_INET6_CONNECT,
            AttachType::CGROUP_UNIX_CONNECT,
            AttachType::CGROUP_INET4_GETPEERNAME,
            AttachType::CGROUP_INET6_GETPEERNAME,
            AttachType::CGROUP_UNIX_GETPEERNAME,
            AttachType::CGROUP_INET4_GETSOCKNAME,
            AttachType::CGROUP_INET6_GETSOCKNAME,
            AttachType::CGROUP_UNIX_GETSOCKNAME,
            AttachType::CGROUP_UDP4_SENDMSG,
            AttachType::CGROUP_UDP6_SENDMSG,
            AttachType::CGROUP_UNIX_SENDMSG,
            AttachType::CGROUP_UDP4_RECVMSG,
            AttachType::CGROUP_UDP6_RECVMSG,
            AttachType::CGROUP_UNIX_RECVMSG,
        ]),
        ProgType::CGROUP_SKB => ok(&[
            AttachType::CGROUP_INET_INGRESS,
            AttachType::CGROUP_INET_EGRESS,
        ]),
        ProgType::CGROUP_SOCKOPT => {
            ok(&[AttachType::CGROUP_SETSOCKOPT, AttachType::CGROUP_GETSOCKOPT])
        }
        ProgType::SK_LOOKUP => ok(&[AttachType::SK_LOOKUP]),
        ProgType::SK_REUSEPORT => ok(&[
            AttachType::SK_REUSEPORT_SELECT,
            AttachType::SK_REUSEPORT_SELECT_OR_MIGRATE,
        ]),
        ProgType::NETFILTER => ok(&[AttachType::NETFILTER]),
        ProgType::SYSCALL | ProgType::EXT if expected.0 != 0 => Err(Errno::EINVAL),
        _ => Ok(()),
    }
}

/// The raw class and fields the structural passes look at.
fn class(code: u8) -> u8 {
    code & 0x07
}

fn is_pseudo_func(i: &Insn) -> bool {
    i.code == (oc::LD | oc::IMM | oc::DW) && i.src_reg() == oc::PSEUDO_FUNC
}

fn is_call(i: &Insn) -> bool {
    i.code == (oc::JMP | oc::CALL)
}

/// The subprogram layout (`subprog_info`): sorted starts, the main program's 0 first.
struct Subprogs {
    starts: Vec<usize>,
    /// Per subprogram: contains `LD_ABS`/`LD_IND`, contains a tail call.
    has_ld_abs: Vec<bool>,
    has_tail_call: Vec<bool>,
}

impl Subprogs {
    fn end(&self, idx: usize, len: usize) -> usize {
        self.starts.get(idx + 1).copied().unwrap_or(len)
    }
}

/// Reads record `i` of `cnt` records of `rec_size` bytes, checking that the bytes past
/// `krec` are zero (`bpf_check_uarg_tail_zero`).
fn record(buf: &[u8], i: usize, rec_size: usize, krec: usize) -> Result<Vec<u32>, Errno> {
    let start = i.checked_mul(rec_size).ok_or(Errno::EFAULT)?;
    let rec = buf
        .get(start..start.saturating_add(rec_size))
        .ok_or(Errno::EFAULT)?;
    if rec.len() > krec && rec.get(krec..).is_some_and(|t| t.iter().any(|&b| b != 0)) {
        return Err(Errno::E2BIG);
    }
    let mut words = rec
        .get(..krec.min(rec.len()))
        .unwrap_or(&[])
        .chunks_exact(4)
        .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
        .collect::<Vec<_>>();
    words.resize(krec / 4, 0);
    Ok(words)
}

fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// `clock_gettime(clock)` in ns.
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    if r != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

impl Runtime {
    /// `BPF_PROG_LOAD`: checks `attr` as the kernel does, resolves map references,
    /// verifies the program and publishes it under a new id (see [the module
    /// docs](crate::prog)).
    ///
    /// # Errors
    ///
    /// The kernel's errno for the same attributes: `EINVAL` for bad flags, types,
    /// attach attributes, names, func/line info, encodings and references; `EPERM`
    /// for missing capabilities; `E2BIG` for too many instructions or maps; `EBADF`
    /// for unused descriptors; `EACCES` for a kernel BTF as program BTF; `EPROTO` for
    /// `MAP_IDX` loads without `fd_array`; `ENOENT` for host variables it cannot
    /// resolve; the verifier's errno (`EACCES`, `EINVAL`, `E2BIG`, ...) when it rejects
    /// the program (unless [`crate::RuntimeConfig::run_unverified`] is on).
    ///
    /// # Example
    ///
    /// An XDP program that drops frames too short for an Ethernet and an IPv4 header,
    /// run with [`Runtime::prog_test_run`]; a program that reads the packet without a
    /// bounds check is refused.
    ///
    /// ```
    /// use structops::{Errno, ProgLoadAttr, ProgType, Runtime, TestRun};
    ///
    /// let rt = Runtime::default();
    /// let prog = structops_isa::assemble(
    ///     "
    ///     r2 = *(u32 *)(r1 +0)      ; xdp_md->data
    ///     r3 = *(u32 *)(r1 +4)      ; xdp_md->data_end
    ///     r0 = 1                    ; XDP_DROP
    ///     r2 += 34
    ///     if r2 > r3 goto out
    ///     r0 = 2                    ; XDP_PASS
    /// out:
    ///     exit
    ///     ",
    /// )?;
    /// let attr = ProgLoadAttr::new(ProgType::XDP, prog.encode(), "GPL").name("min_len");
    /// let handle = rt.prog_load(&attr)?;
    /// assert!(handle.is_verified());
    ///
    /// let mut run = TestRun::with_data(&[0u8; 20]);
    /// rt.prog_test_run(&handle, &mut run)?;
    /// assert_eq!(run.retval, 1);
    /// let mut run = TestRun::with_data(&[0u8; 64]);
    /// rt.prog_test_run(&handle, &mut run)?;
    /// assert_eq!(run.retval, 2);
    ///
    /// // Reading the packet without checking its length first is refused, as by Linux.
    /// let unchecked = structops_isa::assemble(
    ///     "
    ///     r2 = *(u32 *)(r1 +0)
    ///     r0 = *(u8 *)(r2 +13)
    ///     exit
    ///     ",
    /// )?;
    /// let mut log = String::new();
    /// let attr = ProgLoadAttr::new(ProgType::XDP, unchecked.encode(), "GPL");
    /// assert_eq!(rt.prog_load_with_log(&attr, &mut log).err(), Some(Errno::EACCES));
    /// assert!(log.contains("R2 offset is outside of the packet"), "{log}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn prog_load(&self, attr: &ProgLoadAttr) -> Result<ProgHandle, Errno> {
        self.prog_load_with_log(attr, &mut String::new())
    }

    /// [`Runtime::prog_load`], appending the reason for a refusal (and the verifier's
    /// log) to `log`.
    ///
    /// # Errors
    ///
    /// As for [`Runtime::prog_load`].
    pub fn prog_load_with_log(
        &self,
        attr: &ProgLoadAttr,
        log: &mut String,
    ) -> Result<ProgHandle, Errno> {
        let (body, verification) = self.prog_check(attr, log)?;
        // `bpf_check_tail_call`: every program array the program uses must accept it.
        for m in &body.used_maps {
            if !prog_map_compatible(m, &body) {
                log.push_str("program array owned by an incompatible program\n");
                return Err(Errno::EINVAL);
            }
        }
        let obj = self
            .progs
            .table
            .register(|header| Prog::new(header, body, verification))?;
        Ok(Handle::new(obj, AccessMode::ReadWrite))
    }

    /// Everything `prog_load` checks, verification included, producing the program
    /// body and its verification.
    fn prog_check(
        &self,
        attr: &ProgLoadAttr,
        log: &mut String,
    ) -> Result<(ProgBody, Verification), Errno> {
        let caps = self.caps();
        if attr.prog_flags & !PROG_FLAGS_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        let ty = ProgType(attr.prog_type);
        let mut expected = AttachType(attr.expected_attach_type);
        if expected.0 == 0 {
            if ty == ProgType::CGROUP_SOCK {
                expected = AttachType::CGROUP_INET_SOCK_CREATE;
            } else if ty == ProgType::SK_REUSEPORT {
                expected = AttachType::SK_REUSEPORT_SELECT;
            }
        }
        if attr.prog_flags & BPF_F_TOKEN_FD != 0 {
            // No tokens exist here: a descriptor is either unused or not a token.
            let fd = u32::try_from(attr.prog_token_fd).map_err(|_| Errno::EBADF)?;
            self.fd_get(fd)?;
            return Err(Errno::EINVAL);
        }
        let bpf_cap = caps.bpf();
        if self.unprivileged_bpf_disabled && !bpf_cap {
            return Err(Errno::EPERM);
        }
        let insn_cnt = attr.insns.len();
        let limit = if bpf_cap {
            BPF_COMPLEXITY_LIMIT_INSNS
        } else {
            BPF_MAXINSNS
        };
        if insn_cnt == 0 || insn_cnt > limit as usize {
            return Err(Errno::E2BIG);
        }
        if ty != ProgType::SOCKET_FILTER && ty != ProgType::CGROUP_SKB && !bpf_cap {
            return Err(Errno::EPERM);
        }
        if is_net_admin_prog_type(ty) && !caps.net_admin() {
            return Err(Errno::EPERM);
        }
        if is_perfmon_prog_type(ty) && !caps.perfmon() {
            return Err(Errno::EPERM);
        }
        let mut dst_prog: Option<Arc<Prog>> = None;
        let mut attach_btf: Option<Arc<BtfObject>> = None;
        if attr.attach_prog_fd != 0 {
            match self.fd_get(attr.attach_prog_fd) {
                Ok(FdObject::Prog(p)) => dst_prog = Some(p.object().clone()),
                Ok(FdObject::Btf(b)) => {
                    if !b.is_kernel() {
                        return Err(Errno::ENOTSUPP);
                    }
                    attach_btf = Some(b.object().clone());
                }
                _ => return Err(Errno::EINVAL),
            }
        } else if attr.attach_btf_id != 0 {
            attach_btf = Some(self.host_btf().ok_or(Errno::EINVAL)?.object().clone());
        }
        check_attach(
            ty,
            expected,
            attach_btf.is_some(),
            attr.attach_btf_id,
            dst_prog.is_some(),
        )?;
        // `bpf_prog_alloc`: the program's pages, charged to the memcg (the kernel's
        // `bpf_memcg_flags` add `__GFP_ACCOUNT`). 6.12 reports this allocation's
        // failure as `EINVAL`; a memcg that is full is `ENOMEM` here, as for every
        // other charge and as in the kernel's later growth (`bpf_prog_realloc`).
        let mut mem = Charge::new(&self.memcg, prog_alloc_size(insn_cnt))?;
        let license: String = attr
            .license
            .split('\0')
            .next()
            .unwrap_or("")
            .chars()
            .scan(0usize, |n, c| {
                *n += c.len_utf8();
                (*n <= LICENSE_MAX).then_some(c)
            })
            .collect();
        let gpl_compatible = license_is_gpl_compatible(&license);
        if attr.prog_ifindex != 0 {
            // `bpf_prog_dev_bound_init`: there are no network devices here.
            return Err(Errno::EINVAL);
        }
        if !known_prog_type(ty) {
            return Err(Errno::EINVAL);
        }
        let load_time = boottime_ns();
        let name = obj_name(&attr.prog_name)?;
        let sleepable = attr.prog_flags & BPF_F_SLEEPABLE != 0;
        let insns = &attr.insns;

        // --- bpf_check ---
        // check_btf_info_early
        let has_btf_info = attr.func_info_cnt != 0 || attr.line_info_cnt != 0;
        let mut prog_btf: Option<Arc<BtfObject>> = None;
        let mut func_info: Vec<FuncInfo> = Vec::new();
        if has_btf_info {
            let btf = match self.fd_get(attr.prog_btf_fd)? {
                FdObject::Btf(b) => b.object().clone(),
                _ => return Err(Errno::EINVAL),
            };
            if btf.is_kernel() {
                return Err(Errno::EACCES);
            }
            func_info = check_func_info_early(attr, btf.btf(), log)?;
            prog_btf = Some(btf);
        }
        // add_subprog_and_kfunc
        let (mut subprogs, kfuncs) = self.scan_subprogs_and_kfuncs(attr, gpl_compatible, log)?;
        // check_subprogs
        check_subprogs(insns, &mut subprogs, log)?;
        // check_btf_info
        let mut line_info = Vec::new();
        match &prog_btf {
            None => check_abnormal_return(&subprogs, log)?,
            Some(btf) => {
                check_btf_func(&func_info, &subprogs, btf.btf(), log)?;
                line_info = check_btf_line(attr, insns, &subprogs, btf.btf(), log)?;
            }
        }
        // resolve_pseudo_ldimm64. Encodings, jump targets and everything else the
        // kernel finds while walking the program are the verifier's to report, with the
        // kernel's messages and at the point the kernel reports them.
        let tag = prog_tag(insns);
        let (xlated, used_maps, map_refs) = self.resolve_ldimm64(attr, sleepable, log)?;
        // check_attach_btf_id
        let ops_type = attach_btf
            .as_ref()
            .filter(|_| ty == ProgType::STRUCT_OPS)
            .and_then(|b| self.struct_ops.find(b, attr.attach_btf_id));
        let body_attach = ProgAttach {
            ty,
            expected,
            attach_btf_id: attr.attach_btf_id,
            attach_btf: attach_btf.clone(),
            ops_type,
            sleepable,
            gpl_compatible,
        };
        let attach_func_proto = check_attach_btf_id(&body_attach, log)?;
        // check_cfg, do_check and the rest of bpf_check.
        let facts = crate::verify::LoadFacts {
            prog_type: ty,
            expected_attach_type: expected,
            attach_btf_id: attr.attach_btf_id,
            attach: attach_btf
                .as_ref()
                .filter(|_| ty == ProgType::STRUCT_OPS)
                .map(|b| (&**b.btf(), attach_func_proto)),
            caps,
            gpl_compatible,
            sleepable,
            insns,
            func_info: &func_info,
            used_maps: &used_maps,
            map_refs: &map_refs,
        };
        let verdict = crate::verify::verify(self, &facts, attr.log_level, log);
        if let Err(e) = &verdict
            && !self.run_unverified()
        {
            return Err(crate::verify::errno_of(e));
        }
        // Loads through map pointers become constants (one instruction for one, at the
        // submitted positions), before the context rewrites move instructions.
        let mut xlated = xlated;
        if let Ok(proof) = &verdict {
            crate::verify::rewrite_map_ptr_loads(self, &facts, proof, &mut xlated, log)?;
        }
        // convert_ctx_accesses: the verifier's rewrites go into the translated
        // program, and every instruction index moves with them (`adjust_btf_func`,
        // `bpf_adj_linfo`, `adjust_subprog_starts`).
        let mut map_refs = map_refs;
        if let Ok(proof) = &verdict {
            let rw = proof.rewrite();
            xlated = rw.apply(&xlated).map_err(|e| {
                log.push_str(&format!("{e}\n"));
                Errno::EFAULT
            })?;
            let moved = |i: usize| rw.new_index(i).unwrap_or(i);
            let moved32 = |i: u32| moved(i as usize) as u32;
            for f in &mut func_info {
                f.insn_off = moved32(f.insn_off);
            }
            for l in &mut line_info {
                l.insn_off = moved32(l.insn_off);
            }
            for s in &mut subprogs.starts {
                *s = moved(*s);
            }
            for (pc, _) in &mut map_refs {
                *pc = moved(*pc);
            }
        }
        // The runtime's form of the translated program. The verifier accepts bad
        // encodings only in code no path reaches (the kernel then removes it); this
        // runtime does not, so such programs are refused here.
        let program = Program::decode(&xlated).map_err(|e| {
            log.push_str(&format!("{e}\n"));
            Errno::EINVAL
        })?;
        let code = match &verdict {
            Ok(proof) => {
                let facts: Vec<structops_vm::InsnFacts> = proof
                    .facts()
                    .iter()
                    .map(|f| structops_vm::InsnFacts {
                        zext_redundant: f.zext_redundant,
                        divisor_nonzero: f.divisor_nonzero,
                        divisor_not_minus_one: f.divisor_not_minus_one,
                        probe_mem: f.probe_mem,
                        frame_depth: f.frame_depth,
                    })
                    .collect();
                // SAFETY: the verifier's facts about the program it accepted, whose
                // rewritten form `program` is (the same instructions but for map
                // addresses in `LD_IMM64`).
                unsafe { Code::with_facts(&program, &facts) }
            }
            Err(_) => Code::new(&program),
        };
        // `bpf_prog_realloc`: a translated program longer than the submitted one takes
        // more pages.
        mem.grow_to(prog_alloc_size(xlated.len()))?;
        let mut jit_mem = None;
        let verification = match verdict {
            Ok(proof) => {
                let engine = attr.engine.unwrap_or(self.progs.engine);
                let jit = structops_vm::JitOptions {
                    blind_constants: match self.progs.jit_harden {
                        crate::JitHarden::Off => false,
                        crate::JitHarden::Unprivileged => !self.caps().sys_admin(),
                        crate::JitHarden::All => true,
                    },
                    // The time helpers run as direct calls, unless calls are traced
                    // (a trace sees every helper call through the environment).
                    nullary_helpers: (!self.progs.trace_on.load(Ordering::Relaxed)).then(|| {
                        structops_vm::NullaryHelpers {
                            ids: structops_vm::NullaryHelpers::id_set(
                                &crate::exec::NATIVE_TIME_HELPERS,
                            ),
                            func: crate::exec::native_time,
                            data: Arc::as_ptr(&self.progs).expose_provenance() as u64,
                        }
                    }),
                    ..structops_vm::JitOptions::default()
                };
                let (v, charge) = VerifiedProgram::new(
                    proof,
                    program.clone(),
                    code.clone(),
                    engine,
                    &jit,
                    &self.progs.jit_memory,
                    log,
                )?;
                jit_mem = charge;
                Verification::Verified(Box::new(v))
            }
            Err(e) => Verification::Unverified(e),
        };
        let body = ProgBody {
            prog_type: ty,
            expected_attach_type: expected,
            attach_btf_id: attr.attach_btf_id,
            attach_btf,
            attach_func_proto,
            dst_prog,
            name,
            tag,
            gpl_compatible,
            sleepable,
            xdp_has_frags: attr.prog_flags & BPF_F_XDP_HAS_FRAGS != 0,
            load_time,
            orig_insns: insns.clone(),
            xlated,
            program,
            code,
            map_refs,
            used_maps,
            kfuncs,
            btf: prog_btf,
            func_info,
            line_info,
            subprogs: subprogs.starts,
            caps,
            mem,
            jit_mem,
        };
        Ok((body, verification))
    }

    /// `add_subprog_and_kfunc`: subprogram starts from calls and callback loads, and the
    /// structural checks of kfunc calls (`add_kfunc_call`).
    fn scan_subprogs_and_kfuncs(
        &self,
        attr: &ProgLoadAttr,
        gpl_compatible: bool,
        log: &mut String,
    ) -> Result<(Subprogs, Vec<u32>), Errno> {
        let insns = &attr.insns;
        let len = insns.len();
        let mut starts = vec![0usize];
        let mut kfuncs: Vec<u32> = Vec::new();
        let mut kfunc_checked = false;
        for (i, insn) in insns.iter().enumerate() {
            let pseudo_call = is_call(insn) && insn.src_reg() == oc::PSEUDO_CALL;
            let kfunc_call = is_call(insn) && insn.src_reg() == oc::PSEUDO_KFUNC_CALL;
            if !is_pseudo_func(insn) && !pseudo_call && !kfunc_call {
                continue;
            }
            if !self.caps().bpf() {
                log.push_str(
                    "loading/calling other bpf or kernel functions are allowed for CAP_BPF and CAP_SYS_ADMIN\n",
                );
                return Err(Errno::EPERM);
            }
            if !kfunc_call {
                let target = i as i64 + i64::from(insn.imm) + 1;
                if target < 0 || target >= len as i64 {
                    log.push_str(&format!("call to invalid destination at insn {i}\n"));
                    return Err(Errno::EINVAL);
                }
                let t = target as usize;
                if let Err(pos) = starts.binary_search(&t) {
                    starts.insert(pos, t);
                }
                continue;
            }
            // add_kfunc_call
            let host = self.host_btf();
            if !kfunc_checked {
                if host.is_none() {
                    log.push_str("calling kernel function is not supported without host BTF\n");
                    return Err(Errno::ENOTSUPP);
                }
                if !gpl_compatible {
                    log.push_str("cannot call kernel function from non-GPL compatible program\n");
                    return Err(Errno::EINVAL);
                }
                kfunc_checked = true;
            }
            let (func_id, off) = (insn.imm as u32, insn.off);
            if func_id == 0 && off == 0 {
                continue;
            }
            if off != 0 {
                // Module BTFs (`fd_array[off]`) do not exist here.
                if off < 0 {
                    return Err(Errno::EINVAL);
                }
                let fds = attr.fd_array.as_ref().ok_or(Errno::EPROTO)?;
                let fd = *fds.get(off as usize).ok_or(Errno::EFAULT)?;
                return match self.fd_get(fd).map_err(|_| Errno::EBADF)? {
                    FdObject::Btf(_) => Err(Errno::EINVAL),
                    _ => Err(Errno::EBADF),
                };
            }
            if kfuncs.contains(&func_id) {
                continue;
            }
            if kfuncs.len() == MAX_KFUNC_DESCS {
                log.push_str("too many different kernel function calls\n");
                return Err(Errno::E2BIG);
            }
            let host = host.ok_or(Errno::ENOTSUPP)?;
            let btf = host.btf();
            let func = btf.ty(func_id).ok().filter(|t| t.kind() == Kind::Func);
            let Some(func) = func else {
                log.push_str(&format!("kernel btf_id {func_id} is not a function\n"));
                return Err(Errno::EINVAL);
            };
            let proto_ok = func
                .target()
                .and_then(|p| btf.ty(p).ok())
                .is_some_and(|p| p.kind() == Kind::FuncProto);
            if !proto_ok {
                log.push_str(&format!(
                    "kernel function btf_id {func_id} does not have a valid func_proto\n"
                ));
                return Err(Errno::EINVAL);
            }
            let registered = self
                .progs
                .kfuncs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(func_id)
                .is_some();
            if !registered {
                log.push_str(&format!(
                    "cannot find address for kernel function {}\n",
                    btf.type_name(func_id).unwrap_or("?")
                ));
                return Err(Errno::EINVAL);
            }
            kfuncs.push(func_id);
        }
        let n = starts.len();
        Ok((
            Subprogs {
                starts,
                has_ld_abs: vec![false; n],
                has_tail_call: vec![false; n],
            },
            kfuncs,
        ))
    }

    /// `resolve_pseudo_ldimm64`: map references resolved and rewritten to addresses.
    #[expect(
        clippy::type_complexity,
        reason = "the three parallel results of one pass"
    )]
    fn resolve_ldimm64(
        &self,
        attr: &ProgLoadAttr,
        sleepable: bool,
        log: &mut String,
    ) -> Result<(Vec<Insn>, Vec<Arc<Map>>, Vec<(usize, MapRef)>), Errno> {
        let mut xlated = attr.insns.clone();
        let mut used: Vec<Arc<Map>> = Vec::new();
        let mut refs = Vec::new();
        // Slots that do not decode are skipped here; the verifier reports them.
        let mut next = 0usize;
        while next < attr.insns.len() {
            let pc = next;
            let op = match decode_at(&attr.insns, pc) {
                Ok((op, n)) => {
                    next += n;
                    op
                }
                Err(_) => {
                    next += 1;
                    continue;
                }
            };
            let Op::LdImm64 { imm, .. } = op else {
                continue;
            };
            let (fd, value_off) = match imm {
                Imm64::Const(_) | Imm64::Func { .. } => continue,
                Imm64::BtfId { btf_id, btf_fd } => {
                    self.check_pseudo_btf_id(btf_id, btf_fd, log)?;
                    continue;
                }
                Imm64::MapFd { fd } => (fd as u32, None),
                Imm64::MapValue { fd, offset } => (fd as u32, Some(offset)),
                Imm64::MapIdx { idx } | Imm64::MapIdxValue { idx, .. } => {
                    let fds = attr.fd_array.as_ref().ok_or_else(|| {
                        log.push_str("fd_idx without fd_array is invalid\n");
                        Errno::EPROTO
                    })?;
                    let fd = *fds.get(idx as usize).ok_or(Errno::EFAULT)?;
                    let off = match imm {
                        Imm64::MapIdxValue { offset, .. } => Some(offset),
                        _ => None,
                    };
                    (fd, off)
                }
            };
            let map = match self.fd_get(fd) {
                Err(e) => {
                    log.push_str(&format!("fd {fd} is not pointing to valid bpf_map\n"));
                    return Err(e);
                }
                Ok(FdObject::Map(m)) => m.object().clone(),
                Ok(_) => {
                    log.push_str(&format!("fd {fd} is not pointing to valid bpf_map\n"));
                    return Err(Errno::EINVAL);
                }
            };
            let idx = match used.iter().position(|m| Arc::ptr_eq(m, &map)) {
                Some(i) => i,
                None => {
                    if used.len() >= MAX_USED_MAPS {
                        log.push_str(&format!(
                            "The total number of maps per program has reached the limit of \
                             {MAX_USED_MAPS}\n"
                        ));
                        return Err(Errno::E2BIG);
                    }
                    used.push(map.clone());
                    used.len() - 1
                }
            };
            check_map_prog_compatibility(&map, sleepable, log)?;
            let addr = match value_off {
                None => {
                    refs.push((pc, MapRef::Map { map: idx }));
                    Arc::as_ptr(&map) as u64
                }
                Some(off) => {
                    if off >= BPF_MAX_VAR_OFF {
                        log.push_str(&format!("direct value offset of {off} is not allowed\n"));
                        return Err(Errno::EINVAL);
                    }
                    if map.map_type() != MapType::Array {
                        log.push_str("no direct value access support for this map type\n");
                        return Err(Errno::EINVAL);
                    }
                    let p = map.direct_value_addr(off).inspect_err(|_| {
                        log.push_str(&format!(
                            "invalid access to map value pointer, value_size={} off={off}\n",
                            map.value_size()
                        ));
                    })?;
                    refs.push((pc, MapRef::Value { map: idx, off }));
                    p.as_ptr() as u64
                }
            };
            let (Some(first), true) = (xlated.get_mut(pc), pc + 1 < attr.insns.len()) else {
                return Err(Errno::EINVAL);
            };
            first.set_src_reg(0);
            first.imm = addr as u32 as i32;
            if let Some(second) = xlated.get_mut(pc + 1) {
                second.imm = (addr >> 32) as u32 as i32;
            }
        }
        Ok((xlated, used, refs))
    }

    /// `check_pseudo_btf_id`: a typed or untyped host variable. The runtime has no
    /// addresses for host variables yet, so a valid one is `ENOENT` (as a kernel
    /// without the symbol in kallsyms).
    fn check_pseudo_btf_id(&self, btf_id: u32, btf_fd: i32, log: &mut String) -> Result<(), Errno> {
        if btf_fd != 0 {
            let fd = u32::try_from(btf_fd).map_err(|_| Errno::EBADF)?;
            return match self.fd_get(fd)? {
                FdObject::Btf(_) => Err(Errno::EINVAL),
                _ => Err(Errno::EINVAL),
            };
        }
        let host = self.host_btf().ok_or(Errno::EINVAL)?;
        let t = host.btf().ty(btf_id).ok().filter(|_| btf_id != 0);
        let Some(t) = t else {
            log.push_str(&format!("ldimm64 insn specifies invalid btf_id {btf_id}\n"));
            return Err(Errno::EINVAL);
        };
        if !matches!(t.kind(), Kind::Var | Kind::Func) {
            log.push_str(&format!(
                "pseudo btf_id {btf_id} in ldimm64 isn't KIND_VAR or KIND_FUNC\n"
            ));
            return Err(Errno::EINVAL);
        }
        log.push_str(&format!(
            "ldimm64 failed to find the address for host symbol '{}'\n",
            host.btf().type_name(btf_id).unwrap_or("?")
        ));
        Err(Errno::ENOENT)
    }

    /// `BPF_PROG_GET_FD_BY_ID`: `EPERM` without `CAP_SYS_ADMIN`, `ENOENT` for no such
    /// program.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn prog_get_fd_by_id(&self, id: u32) -> Result<ProgHandle, Errno> {
        if !self.caps().sys_admin() {
            return Err(Errno::EPERM);
        }
        if id >= ID_LIMIT {
            return Err(Errno::ENOENT);
        }
        Ok(Handle::new(
            self.progs.table.get(id)?,
            AccessMode::ReadWrite,
        ))
    }

    /// `BPF_OBJ_GET_INFO_BY_FD` on a program.
    pub fn prog_info(&self, prog: &ProgHandle) -> ProgInfo {
        prog.info()
    }

    /// Every loaded program, in id order.
    pub fn progs(&self) -> Vec<Arc<Prog>> {
        self.progs.table.live()
    }

    /// Lets programs the verifier rejects load anyway, to run in checked mode only
    /// (see [`crate::RuntimeConfig::run_unverified`]).
    pub fn set_run_unverified(&self, on: bool) {
        self.progs.run_unverified.store(on, Ordering::Release);
    }

    /// Does the runtime load programs the verifier rejects (to run checked only)?
    pub fn run_unverified(&self) -> bool {
        self.progs.run_unverified.load(Ordering::Acquire)
    }

    /// Makes the time helpers (`bpf_ktime_get_ns`, `_boot_ns`, `_coarse_ns`,
    /// `bpf_jiffies64`) read `clock` instead of the system's clocks (`None` restores
    /// them): a simulator's virtual time, or a fixed clock for reproducible runs. The
    /// clock is called under the runtime's clock lock, so it must not call `set_clock`.
    pub fn set_clock(&self, clock: Option<crate::prog::Clock>) {
        let on = clock.is_some();
        match self.progs.clock.write() {
            Ok(mut c) => *c = clock,
            Err(poisoned) => *poisoned.into_inner() = clock,
        }
        self.progs.clock_on.store(on, Ordering::Release);
    }

    /// Calls `trace` after every helper and kfunc call of every run that starts from
    /// now on, in order, with its arguments and result (`None` turns tracing off).
    /// Set it before loading the programs to trace: JIT code loaded without a trace
    /// calls the time helpers directly (not through the environment), so they do not
    /// appear in traces.
    /// For debugging and for differential tests of the engines; a runtime without a
    /// trace pays one relaxed load per run.
    pub fn set_helper_trace(&self, trace: Option<crate::prog::HelperTrace>) {
        let on = trace.is_some();
        match self.progs.helper_trace.write() {
            Ok(mut t) => *t = trace,
            Err(poisoned) => *poisoned.into_inner() = trace,
        }
        self.progs.trace_on.store(on, Ordering::Release);
    }

    /// The engine verified programs run on unless their load names one
    /// ([`crate::RuntimeConfig::engine`]).
    pub fn engine(&self) -> structops_vm::Engine {
        self.progs.engine
    }
}

/// What `check_attach_btf_id` needs.
struct ProgAttach {
    ty: ProgType,
    expected: AttachType,
    attach_btf_id: u32,
    attach_btf: Option<Arc<BtfObject>>,
    /// For struct_ops, the registered ops type `attach_btf_id` names
    /// (`bpf_struct_ops_find`).
    ops_type: Option<Arc<crate::struct_ops::OpsType>>,
    sleepable: bool,
    gpl_compatible: bool,
}

/// `can_be_sleepable`.
fn can_be_sleepable(ty: ProgType, expected: AttachType) -> bool {
    if ty == ProgType::TRACING {
        return matches!(
            expected,
            AttachType::TRACE_FENTRY
                | AttachType::TRACE_FEXIT
                | AttachType::MODIFY_RETURN
                | AttachType::TRACE_ITER
        );
    }
    if ty == ProgType::LSM {
        return expected != AttachType::LSM_CGROUP;
    }
    matches!(ty, ProgType::KPROBE | ProgType::STRUCT_OPS)
}

/// `check_attach_btf_id`: returns the struct_ops member's `FUNC_PROTO` id (0 for other
/// types).
///
/// struct_ops programs follow `check_struct_ops_btf_id`: `attach_btf_id` must name an ops
/// type registered with [`Runtime::register_struct_ops`] (`ENOTSUPP` otherwise, as the
/// kernel refuses a struct no subsystem registered), `expected_attach_type` one of its
/// function members that the host can call (a supported member) and that the type's
/// `check_member` accepts. The verifier repeats these checks with the same messages.
fn check_attach_btf_id(a: &ProgAttach, log: &mut String) -> Result<u32, Errno> {
    if a.ty == ProgType::SYSCALL {
        if a.sleepable {
            return Ok(0);
        }
        log.push_str("Syscall programs can only be sleepable\n");
        return Err(Errno::EINVAL);
    }
    if a.sleepable && !can_be_sleepable(a.ty, a.expected) {
        log.push_str(
            "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can be sleepable\n",
        );
        return Err(Errno::EINVAL);
    }
    if a.ty == ProgType::STRUCT_OPS {
        if !a.gpl_compatible {
            log.push_str("struct ops programs must have a GPL compatible license\n");
            return Err(Errno::EINVAL);
        }
        let Some(btf) = a.attach_btf.as_ref().filter(|_| a.attach_btf_id != 0) else {
            return Err(Errno::ENOTSUPP);
        };
        let btf = btf.btf();
        let Some(ops) = &a.ops_type else {
            log.push_str(&format!(
                "attach_btf_id {} is not a supported struct\n",
                a.attach_btf_id
            ));
            return Err(Errno::ENOTSUPP);
        };
        let sname = ops.name();
        let idx = a.expected.0;
        let Some(member) = ops.members().get(idx as usize) else {
            log.push_str(&format!(
                "attach to invalid member idx {idx} of struct {sname}\n"
            ));
            return Err(Errno::EINVAL);
        };
        let mname = &member.name;
        let Some(proto) = btf.func_ptr_proto(member.ty).ok().flatten() else {
            log.push_str(&format!(
                "attach to invalid member {mname}(@idx {idx}) of struct {sname}\n"
            ));
            return Err(Errno::EINVAL);
        };
        if let Err(e) = ops.check_member(idx, a.sleepable) {
            log.push_str(&format!(
                "attach to unsupported member {mname} of struct {sname}\n"
            ));
            return Err(e);
        }
        return Ok(proto);
    }
    if !matches!(a.ty, ProgType::TRACING | ProgType::LSM | ProgType::EXT) {
        return Ok(0);
    }
    if a.attach_btf_id == 0 {
        log.push_str("Tracing programs must provide btf_id\n");
        return Err(Errno::EINVAL);
    }
    if let Some(btf) = &a.attach_btf {
        let is_func = btf
            .btf()
            .ty(a.attach_btf_id)
            .is_ok_and(|t| t.kind() == Kind::Func);
        if !is_func && a.ty != ProgType::EXT && a.expected != AttachType::TRACE_RAW_TP {
            log.push_str(&format!(
                "attach_btf_id {} is not a function\n",
                a.attach_btf_id
            ));
            return Err(Errno::EINVAL);
        }
    }
    Ok(0)
}

/// `check_map_prog_compatibility` (the parts that apply to this runtime's maps).
fn check_map_prog_compatibility(map: &Map, sleepable: bool, log: &mut String) -> Result<(), Errno> {
    if sleepable
        && !matches!(
            map.map_type(),
            MapType::Hash
                | MapType::LruHash
                | MapType::Array
                | MapType::PercpuHash
                | MapType::PercpuArray
                | MapType::LruPercpuHash
                | MapType::ArrayOfMaps
                | MapType::HashOfMaps
                | MapType::Ringbuf
                | MapType::SkStorage
                | MapType::TaskStorage
        )
    {
        log.push_str(
            "Sleepable programs can only use array, hash, ringbuf and local storage maps\n",
        );
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// `check_btf_func_early`: record sizes, increasing offsets, `FUNC` types.
fn check_func_info_early(
    attr: &ProgLoadAttr,
    btf: &Btf,
    log: &mut String,
) -> Result<Vec<FuncInfo>, Errno> {
    let n = attr.func_info_cnt;
    if n == 0 {
        return Ok(Vec::new());
    }
    let rec = attr.func_info_rec_size;
    if (rec as usize) < FUNC_INFO_SIZE || rec > MAX_FUNCINFO_REC_SIZE || !rec.is_multiple_of(4) {
        log.push_str(&format!("invalid func info rec size {rec}\n"));
        return Err(Errno::EINVAL);
    }
    let mut out = Vec::with_capacity(n.min(4096) as usize);
    let mut prev = 0u32;
    for i in 0..n as usize {
        let w = record(&attr.func_info, i, rec as usize, FUNC_INFO_SIZE)?;
        let (insn_off, type_id) = (
            w.first().copied().unwrap_or(0),
            w.get(1).copied().unwrap_or(0),
        );
        if i == 0 && insn_off != 0 {
            log.push_str(&format!(
                "nonzero insn_off {insn_off} for the first func info record\n"
            ));
            return Err(Errno::EINVAL);
        }
        if i > 0 && insn_off <= prev {
            log.push_str(&format!(
                "same or smaller insn offset ({insn_off}) than previous func info record ({prev})\n"
            ));
            return Err(Errno::EINVAL);
        }
        let func = btf.ty(type_id).ok().filter(|t| t.kind() == Kind::Func);
        let proto_ok = func
            .and_then(|f| f.target())
            .and_then(|p| btf.ty(p).ok())
            .is_some_and(|p| p.kind() == Kind::FuncProto);
        if func.is_none() || !proto_ok {
            log.push_str(&format!("invalid type id {type_id} in func info\n"));
            return Err(Errno::EINVAL);
        }
        prev = insn_off;
        out.push(FuncInfo { insn_off, type_id });
    }
    Ok(out)
}

/// `check_subprogs`: jumps stay inside their subprogram, and each subprogram ends with
/// `exit` or an unconditional jump. Also notes `LD_ABS` and tail calls per subprogram.
fn check_subprogs(insns: &[Insn], sp: &mut Subprogs, log: &mut String) -> Result<(), Errno> {
    let len = insns.len();
    let mut cur = 0usize;
    let mut start = 0usize;
    let mut end = sp.end(0, len);
    for (i, insn) in insns.iter().enumerate() {
        let code = insn.code;
        if is_call(insn)
            && insn.src_reg() == 0
            && insn.imm == crate::helpers::BPF_FUNC_TAIL_CALL
            && let Some(t) = sp.has_tail_call.get_mut(cur)
        {
            *t = true;
        }
        let mode = code & 0xe0;
        if class(code) == oc::LD
            && (mode == oc::ABS || mode == oc::IND)
            && let Some(t) = sp.has_ld_abs.get_mut(cur)
        {
            *t = true;
        }
        let cls = class(code);
        let op = code & 0xf0;
        if (cls == oc::JMP || cls == oc::JMP32) && op != oc::EXIT && op != oc::CALL {
            let off = if code == (oc::JMP32 | oc::JA) {
                i as i64 + i64::from(insn.imm) + 1
            } else {
                i as i64 + i64::from(insn.off) + 1
            };
            if off < start as i64 || off >= end as i64 {
                log.push_str(&format!("jump out of range from insn {i} to {off}\n"));
                return Err(Errno::EINVAL);
            }
        }
        if i + 1 == end {
            if code != (oc::JMP | oc::EXIT)
                && code != (oc::JMP32 | oc::JA)
                && code != (oc::JMP | oc::JA)
            {
                log.push_str("last insn is not an exit or jmp\n");
                return Err(Errno::EINVAL);
            }
            start = end;
            cur += 1;
            end = sp.end(cur, len);
        }
    }
    Ok(())
}

/// `check_abnormal_return`: without BTF, subprograms may not use `LD_ABS` or tail calls.
fn check_abnormal_return(sp: &Subprogs, log: &mut String) -> Result<(), Errno> {
    for i in 1..sp.starts.len() {
        if sp.has_ld_abs.get(i).copied().unwrap_or(false) {
            log.push_str("LD_ABS is not allowed in subprogs without BTF\n");
            return Err(Errno::EINVAL);
        }
        if sp.has_tail_call.get(i).copied().unwrap_or(false) {
            log.push_str("tail_call is not allowed in subprogs without BTF\n");
            return Err(Errno::EINVAL);
        }
    }
    Ok(())
}

/// `check_btf_func`: one func_info per subprogram, at its start; subprograms with
/// `LD_ABS` or tail calls must return a scalar.
fn check_btf_func(
    func_info: &[FuncInfo],
    sp: &Subprogs,
    btf: &Btf,
    log: &mut String,
) -> Result<(), Errno> {
    if func_info.is_empty() {
        return check_abnormal_return(sp, log);
    }
    if func_info.len() != sp.starts.len() {
        log.push_str("number of funcs in func_info doesn't match number of subprogs\n");
        return Err(Errno::EINVAL);
    }
    for (i, (fi, &start)) in func_info.iter().zip(&sp.starts).enumerate() {
        if fi.insn_off as usize != start {
            log.push_str("func_info BTF section doesn't match subprog layout in BPF program\n");
            return Err(Errno::EINVAL);
        }
        if i == 0 {
            continue;
        }
        let ret = btf
            .ty(fi.type_id)
            .ok()
            .and_then(|f| f.target())
            .and_then(|p| btf.func_proto(p).ok())
            .map(|(ret, _)| ret)
            .and_then(|r| btf.skip_modifiers(r).ok())
            .and_then(|r| btf.ty(r).ok());
        let scalar = ret.is_some_and(|t| match &t.kind {
            TypeKind::Int { size, .. } => *size <= 8,
            TypeKind::Enum(_) | TypeKind::Enum64(_) => true,
            _ => false,
        });
        if !scalar && sp.has_ld_abs.get(i).copied().unwrap_or(false) {
            log.push_str("LD_ABS is only allowed in functions that return 'int'.\n");
            return Err(Errno::EINVAL);
        }
        if !scalar && sp.has_tail_call.get(i).copied().unwrap_or(false) {
            log.push_str("tail_call is only allowed in functions that return 'int'.\n");
            return Err(Errno::EINVAL);
        }
    }
    Ok(())
}

/// `check_btf_line`.
fn check_btf_line(
    attr: &ProgLoadAttr,
    insns: &[Insn],
    sp: &Subprogs,
    btf: &Btf,
    log: &mut String,
) -> Result<Vec<LineInfo>, Errno> {
    let n = attr.line_info_cnt;
    if n == 0 {
        return Ok(Vec::new());
    }
    if n as usize > i32::MAX as usize / LINE_INFO_SIZE {
        return Err(Errno::EINVAL);
    }
    let rec = attr.line_info_rec_size;
    if (rec as usize) < LINE_INFO_SIZE || rec > MAX_FUNCINFO_REC_SIZE || !rec.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let mut out = Vec::with_capacity(n.min(65536) as usize);
    let mut s = 0usize;
    let mut prev = 0u32;
    for i in 0..n as usize {
        let w = record(&attr.line_info, i, rec as usize, LINE_INFO_SIZE)?;
        let li = LineInfo {
            insn_off: w.first().copied().unwrap_or(0),
            file_name_off: w.get(1).copied().unwrap_or(0),
            line_off: w.get(2).copied().unwrap_or(0),
            line_col: w.get(3).copied().unwrap_or(0),
        };
        if (i > 0 && li.insn_off <= prev) || li.insn_off as usize >= insns.len() {
            log.push_str(&format!(
                "Invalid line_info[{i}].insn_off:{} (prev_offset:{prev} prog->len:{})\n",
                li.insn_off,
                insns.len()
            ));
            return Err(Errno::EINVAL);
        }
        if insns.get(li.insn_off as usize).is_none_or(|x| x.code == 0) {
            log.push_str(&format!("Invalid insn code at line_info[{i}].insn_off\n"));
            return Err(Errno::EINVAL);
        }
        if btf.name(li.line_off).is_err() || btf.name(li.file_name_off).is_err() {
            log.push_str(&format!(
                "Invalid line_info[{i}].line_off or .file_name_off\n"
            ));
            return Err(Errno::EINVAL);
        }
        if let Some(&start) = sp.starts.get(s) {
            if li.insn_off as usize == start {
                s += 1;
            } else if start < li.insn_off as usize {
                log.push_str(&format!("missing bpf_line_info for func#{s}\n"));
                return Err(Errno::EINVAL);
            }
        }
        prev = li.insn_off;
        out.push(li);
    }
    if s != sp.starts.len() {
        log.push_str(&format!(
            "missing bpf_line_info for {} funcs starting from func#{s}\n",
            sp.starts.len() - s
        ));
        return Err(Errno::EINVAL);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpl_licenses() {
        for l in ["GPL", "GPL v2", "Dual MIT/GPL", "Dual BSD/GPL"] {
            assert!(license_is_gpl_compatible(l), "{l}");
        }
        for l in ["MIT", "gpl", "GPL ", "", "Proprietary"] {
            assert!(!license_is_gpl_compatible(l), "{l}");
        }
    }

    #[test]
    fn record_tail_must_be_zero() {
        let mut buf = vec![0u8; 12];
        buf[0] = 1;
        assert_eq!(record(&buf, 0, 12, 8).unwrap(), vec![1, 0]);
        buf[9] = 1;
        assert_eq!(record(&buf, 0, 12, 8), Err(Errno::E2BIG));
        assert_eq!(record(&buf, 1, 12, 8), Err(Errno::EFAULT));
    }

    #[test]
    fn attach_rules() {
        let none = AttachType(0);
        assert_eq!(check_attach(ProgType::XDP, none, false, 0, false), Ok(()));
        assert_eq!(
            check_attach(ProgType::XDP, none, true, 5, false),
            Err(Errno::EINVAL),
            "btf id for a type without one"
        );
        assert_eq!(
            check_attach(ProgType::STRUCT_OPS, AttachType(3), true, 5, false),
            Ok(())
        );
        assert_eq!(
            check_attach(ProgType::STRUCT_OPS, none, true, BTF_MAX_TYPE + 1, false),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_attach(ProgType::CGROUP_SKB, AttachType::XDP, false, 0, false),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            check_attach(ProgType::SYSCALL, AttachType(1), false, 0, false),
            Err(Errno::EINVAL)
        );
        assert!(!known_prog_type(ProgType::LIRC_MODE2));
        assert!(!known_prog_type(ProgType(0)) && !known_prog_type(ProgType(33)));
    }
}
