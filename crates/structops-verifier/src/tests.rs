//! Unit tests of the verifier rules with a mock environment.

use structops_isa::{Insn, assemble};

use crate::env::{
    CtxField, LogOptions, MapInfo, MapRef, PacketAccess, Privileges, ProgInfo, ReturnRule,
    VerifierEnv,
};
use crate::error::{E2BIG, EACCES, EBADF, EINVAL};
use crate::proto::{Arg, ArgType, HelperProto, Ret, RetType, TypeFlags};
use crate::{VerifiedProgram, VerifyError, verify};

/// An XDP-like environment: `xdp_md` context, a hash map (fd 1, key 4,
/// value 8), an array (fd 2, key 4, value 16), a ring buffer (fd 3) and a
/// few helpers.
pub(crate) struct Mock {
    pub ret: ReturnRule,
    /// Fds of the hash map, the array and the ring buffer.
    pub fds: [i32; 3],
}

impl Default for Mock {
    fn default() -> Self {
        Mock {
            ret: ReturnRule::Any,
            fds: [1, 2, 3],
        }
    }
}

fn map(map_type: u32, key_size: u32, value_size: u32) -> MapInfo {
    MapInfo {
        map_type,
        key_size,
        value_size,
        max_entries: 16,
        flags: 0,
        rdonly_prog: false,
        wronly_prog: false,
        frozen_value: None,
        name: String::new(),
        direct_value: map_type == 2,
    }
}

const fn a(ty: ArgType) -> Arg {
    Arg::new(ty)
}

pub(crate) fn mock_helper(id: i32) -> Option<HelperProto> {
    let d = Arg::DONTCARE;
    let p = |name: &'static str, ret: Ret, args: [Arg; 5]| HelperProto {
        id,
        name,
        ret,
        args,
        gpl_only: false,
        might_sleep: false,
        pkt_access: true,
    };
    Some(match id {
        1 => p(
            "map_lookup_elem",
            Ret {
                ty: RetType::PtrToMapValue,
                flags: TypeFlags::PTR_MAYBE_NULL,
            },
            [a(ArgType::ConstMapPtr), a(ArgType::PtrToMapKey), d, d, d],
        ),
        2 => p(
            "map_update_elem",
            Ret::INTEGER,
            [
                a(ArgType::ConstMapPtr),
                a(ArgType::PtrToMapKey),
                a(ArgType::PtrToMapValue),
                a(ArgType::Anything),
                d,
            ],
        ),
        7 => p("get_prandom_u32", Ret::INTEGER, [d; 5]),
        6 => HelperProto {
            gpl_only: true,
            ..p(
                "trace_printk",
                Ret::INTEGER,
                [
                    Arg::with(ArgType::PtrToMem, TypeFlags::MEM_RDONLY),
                    a(ArgType::ConstSize),
                    d,
                    d,
                    d,
                ],
            )
        },
        113 => p(
            "probe_read_kernel",
            Ret::INTEGER,
            [
                Arg::with(
                    ArgType::PtrToMem,
                    TypeFlags::MEM_UNINIT.union(TypeFlags::MEM_WRITE),
                ),
                a(ArgType::ConstSizeOrZero),
                a(ArgType::Anything),
                d,
                d,
            ],
        ),
        131 => p(
            "ringbuf_reserve",
            Ret {
                ty: RetType::PtrToMem,
                flags: TypeFlags::PTR_MAYBE_NULL.union(TypeFlags::MEM_RINGBUF),
            },
            [
                a(ArgType::ConstMapPtr),
                a(ArgType::ConstAllocSizeOrZero),
                a(ArgType::Anything),
                d,
                d,
            ],
        ),
        132 => p(
            "ringbuf_submit",
            Ret::VOID,
            [
                Arg::with(ArgType::PtrToRingbufMem, TypeFlags::OBJ_RELEASE),
                a(ArgType::Anything),
                d,
                d,
                d,
            ],
        ),
        _ => return None,
    })
}

impl VerifierEnv for Mock {
    fn map(&self, m: MapRef) -> Option<MapInfo> {
        match m {
            MapRef::Fd(fd) if fd == self.fds[0] => Some(map(1, 4, 8)),
            MapRef::Fd(fd) if fd == self.fds[1] => Some(map(2, 4, 16)),
            MapRef::Fd(fd) if fd == self.fds[2] => Some(map(27, 0, 0)),
            _ => None,
        }
    }

    fn helper(&self, id: i32) -> Option<HelperProto> {
        mock_helper(id)
    }

    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField> {
        if write || size != 4 || !(0..24).contains(&off) || off % 4 != 0 {
            return None;
        }
        Some(match off {
            0 => CtxField::PacketData,
            4 => CtxField::PacketEnd,
            8 => CtxField::PacketMeta,
            _ => CtxField::Scalar,
        })
    }

    fn packet_access(&self) -> PacketAccess {
        PacketAccess::ReadWrite
    }

    fn return_rule(&self) -> ReturnRule {
        self.ret
    }
}

fn insns(src: &str) -> Vec<Insn> {
    assemble(src).unwrap().encode()
}

fn run_with(src: &str, privileges: Privileges) -> Result<VerifiedProgram, VerifyError> {
    let info = ProgInfo {
        gpl_compatible: true,
        privileges,
        ..ProgInfo::default()
    };
    verify(
        &insns(src),
        &info,
        &Mock::default(),
        &LogOptions {
            level: 1,
            stats: false,
        },
    )
}

fn ok(src: &str) -> VerifiedProgram {
    match run_with(src, Privileges::ROOT) {
        Ok(p) => p,
        Err(e) => panic!("rejected: {e}\n{}", e.log),
    }
}

fn err(src: &str) -> VerifyError {
    err_with(src, Privileges::ROOT)
}

fn err_with(src: &str, p: Privileges) -> VerifyError {
    match run_with(src, p) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e,
    }
}

fn rejects(src: &str, errno: i32, msg: &str) {
    let e = err(src);
    assert_eq!(
        (e.errno, e.message.as_str()),
        (errno, msg),
        "log:\n{}",
        e.log
    );
}

fn rejects_unpriv(src: &str, errno: i32, msg: &str) {
    let e = err_with(src, Privileges::BPF_ONLY);
    assert_eq!(
        (e.errno, e.message.as_str()),
        (errno, msg),
        "log:\n{}",
        e.log
    );
}

// ---- structure ----

#[test]
fn minimal_program() {
    let p = ok("r0 = 0\nexit");
    assert_eq!(p.stats().insn_processed, 2);
    assert!(
        p.log().contains("processed 2 insns (limit 1000000)"),
        "{}",
        p.log()
    );
}

#[test]
fn unknown_opcode() {
    let mut v = insns("r0 = 0\nexit");
    v.insert(1, Insn::new(0xff, 0, 0, 0, 0));
    let e = verify(
        &v,
        &ProgInfo::default(),
        &Mock::default(),
        &LogOptions::default(),
    )
    .unwrap_err();
    assert_eq!((e.errno, e.message.as_str()), (EINVAL, "unknown opcode ff"));
}

#[test]
fn jump_out_of_range() {
    rejects(
        "r0 = 0\ngoto pc+5\nexit",
        EINVAL,
        "jump out of range from insn 1 to 7",
    );
}

#[test]
fn fall_through_off_the_end() {
    rejects("r0 = 0", EINVAL, "last insn is not an exit or jmp");
}

#[test]
fn unreachable_insn() {
    rejects("r0 = 0\nexit\nr0 = 1\nexit", EINVAL, "unreachable insn 2");
}

#[test]
fn back_edge_unprivileged() {
    let e = run_with(
        "r0 = 0\nl:\nr0 += 1\nif r0 < 5 goto l\nexit",
        Privileges {
            bpf_capable: false,
            ..Privileges::ROOT
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EINVAL, "back-edge from insn 2 to 1")
    );
}

#[test]
fn bounded_loop_privileged() {
    let p = ok("r0 = 0\nl:\nr0 += 1\nif r0 < 5 goto l\nexit");
    assert!(p.stats().insn_processed >= 10);
}

#[test]
fn infinite_loop() {
    rejects(
        "r0 = 0\nl:\nr1 = 0\ngoto l\n",
        EINVAL,
        "infinite loop detected at insn 1",
    );
}

#[test]
fn unbounded_loop_hits_limit() {
    rejects(
        "call h#7\nl:\nr0 += 1\nif r0 != 0 goto l\nexit",
        EINVAL,
        "infinite loop detected at insn 1",
    );
    let e = err("r0 = 0\nl:\nr0 += 1\nif r0 < 2000000 goto l\nexit");
    assert_eq!(e.errno, E2BIG);
    assert!(
        e.message
            .starts_with("BPF program is too large. Processed 1000001 insn"),
        "{}",
        e.message
    );
}

#[test]
fn ldimm64_middle_jump() {
    // goto +1 lands on the second half of the ld_imm64.
    let v = insns("if r1 == 0x0 goto pc+1\nr1 = 0x100000000\nr0 = 0\nexit");
    let e = verify(
        &v,
        &ProgInfo::default(),
        &Mock::default(),
        &LogOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EINVAL, "jump into the middle of ldimm64 insn 1")
    );
}

#[test]
fn bad_map_fd() {
    rejects(
        "r1 = map[id:9]\nr0 = 0\nexit",
        EBADF,
        "fd 9 is not pointing to valid bpf_map",
    );
}

// ---- registers ----

#[test]
fn uninit_register_read() {
    rejects("r0 = r2\nexit", EACCES, "R2 !read_ok");
}

#[test]
fn exit_without_r0() {
    rejects("exit", EACCES, "R0 !read_ok");
}

#[test]
fn frame_pointer_read_only() {
    rejects(
        "r10 = 0\nr0 = 0\nexit",
        EACCES,
        "frame pointer is read only",
    );
}

#[test]
fn div_by_zero_and_shift() {
    rejects("r0 = 1\nr0 /= 0\nexit", EINVAL, "div by zero");
    rejects("r0 = 1\nr0 <<= 64\nexit", EINVAL, "invalid shift 64");
    rejects("r0 = 1\nw0 <<= 32\nexit", EINVAL, "invalid shift 32");
}

#[test]
fn scalar_deref() {
    rejects(
        "r1 = 0\nr0 = *(u32 *)(r1 +0)\nexit",
        EACCES,
        "R1 invalid mem access 'scalar'",
    );
}

#[test]
fn pointer_arithmetic_rules() {
    rejects(
        "r1 = r10\nw1 += 1\nr0 = 0\nexit",
        EACCES,
        "R1 32-bit pointer arithmetic prohibited",
    );
    rejects(
        "r1 = r10\nr1 *= 2\nr0 = 0\nexit",
        EACCES,
        "R1 pointer arithmetic with *= operator prohibited",
    );
    rejects(
        "r1 = r10\nr1 &= 2\nr0 = 0\nexit",
        EACCES,
        "R1 bitwise operator &= on pointer prohibited",
    );
    rejects(
        "r1 = r10\nr2 = r10\nr1 += r2\nr0 = 0\nexit",
        EACCES,
        "R1 pointer += pointer prohibited",
    );
    rejects(
        "r1 = r10\nr2 = 1\nr2 -= r1\nr0 = 0\nexit",
        EACCES,
        "R2 tried to subtract pointer from scalar",
    );
    rejects(
        "r1 = r10\nr2 = 1\nr1 -= r2\nr0 = 0\nexit",
        EACCES,
        "R1 subtraction from stack pointer prohibited",
    );
}

#[test]
fn pointer_minus_pointer_is_scalar_for_root() {
    ok("r1 = r10\nr2 = r10\nr1 -= r2\nr0 = r1\nexit");
    rejects_unpriv(
        "r1 = r10\nr2 = r10\nr1 -= r2\nr0 = 0\nexit",
        EACCES,
        "R1 pointer -= pointer prohibited",
    );
}

#[test]
fn ctx_access() {
    ok("r0 = *(u32 *)(r1 +12)\nexit");
    rejects(
        "r0 = *(u32 *)(r1 +64)\nexit",
        EACCES,
        "invalid bpf_context access off=64 size=4",
    );
    rejects(
        "r0 = 0\n*(u32 *)(r1 +12) = r0\nexit",
        EACCES,
        "invalid bpf_context access off=12 size=4",
    );
    rejects(
        "r1 += 4\nr0 = *(u32 *)(r1 +0)\nexit",
        EACCES,
        "dereference of modified ctx ptr R1 off=4 disallowed",
    );
}

// ---- stack ----

#[test]
fn stack_spill_fill_pointer() {
    ok("*(u64 *)(r10 -8) = r1\nr2 = *(u64 *)(r10 -8)\nr0 = *(u32 *)(r2 +12)\nexit");
}

#[test]
fn stack_bounds() {
    rejects(
        "r0 = 0\n*(u64 *)(r10 +0) = r0\nexit",
        EACCES,
        "invalid write to stack R10 off=0 size=8",
    );
    rejects(
        "r0 = 0\n*(u64 *)(r10 -520) = r0\nexit",
        EACCES,
        "invalid write to stack R10 off=-520 size=8",
    );
    rejects(
        "r0 = 0\n*(u32 *)(r10 -6) = r0\nexit",
        EACCES,
        "misaligned stack access off 0+0+-6 size 4",
    );
}

#[test]
fn uninit_stack_read() {
    ok("r0 = *(u64 *)(r10 -8)\nexit");
    rejects_unpriv(
        "r0 = *(u64 *)(r10 -8)\nexit",
        EACCES,
        "invalid read from stack R10 off=-8 size=8",
    );
    rejects_unpriv(
        "r0 = 0\n*(u32 *)(r10 -4) = r0\nr0 = *(u64 *)(r10 -8)\nexit",
        EACCES,
        "invalid read from stack off -8+0 size 8",
    );
    // A narrow spill leaves the never-written rest of its slot uninitialized
    // (mark_stack_slot_misc keeps STACK_INVALID).
    rejects_unpriv(
        "r0 = 0\n*(u32 *)(r10 -8) = r0\nr0 = *(u64 *)(r10 -8)\nexit",
        EACCES,
        "invalid read from stack off -8+4 size 8",
    );
}

#[test]
fn spilled_scalar_keeps_bounds() {
    ok(
        "call h#7\nr0 &= 7\n*(u64 *)(r10 -8) = r0\nr1 = *(u64 *)(r10 -8)\nr2 = r10\nr2 += -16\nr2 += r1\nr0 = *(u8 *)(r2 +0)\nexit",
    );
}

#[test]
fn partial_pointer_fill() {
    rejects(
        "*(u64 *)(r10 -8) = r1\nr0 = *(u32 *)(r10 -8)\nexit",
        EACCES,
        "invalid size of register fill",
    );
}

#[test]
fn pointer_spill_size() {
    rejects(
        "*(u32 *)(r10 -8) = r1\nr0 = 0\nexit",
        EACCES,
        "invalid size of register spill",
    );
}

#[test]
fn variable_stack_read() {
    ok(
        "r0 = 0\n*(u64 *)(r10 -8) = r0\n*(u64 *)(r10 -16) = r0\ncall h#7\nr0 &= 8\nr1 = r10\nr1 += -16\nr1 += r0\nr0 = *(u64 *)(r1 +0)\nexit",
    );
}

// ---- maps ----

const LOOKUP: &str =
    "r1 = map[id:1]\nr2 = r10\nr2 += -4\nr3 = 0\n*(u32 *)(r10 -4) = r3\ncall h#1\n";

#[test]
fn map_lookup_needs_null_check() {
    rejects(
        &format!("{LOOKUP}r0 = *(u64 *)(r0 +0)\nexit"),
        EACCES,
        "R0 invalid mem access 'map_value_or_null'",
    );
    ok(&format!(
        "{LOOKUP}if r0 == 0x0 goto out\nr0 = *(u64 *)(r0 +0)\nout:\nr0 = 0\nexit"
    ));
}

#[test]
fn map_value_bounds() {
    let e = err(&format!(
        "{LOOKUP}if r0 == 0x0 goto out\nr0 = *(u32 *)(r0 +8)\nout:\nr0 = 0\nexit"
    ));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EACCES,
            "R0 min value is outside of the allowed memory range"
        )
    );
    assert!(
        e.log
            .contains("invalid access to map value, value_size=8 off=8 size=4\nR0 min value"),
        "{}",
        e.log
    );
}

#[test]
fn map_value_variable_offset() {
    let pre = format!("{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall h#7\n");
    ok(&format!(
        "{pre}r0 &= 7\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
    ));
    rejects(
        &format!("{pre}r0 &= 15\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"),
        EACCES,
        "R6 max value is outside of the allowed memory range",
    );
    rejects(
        &format!("{pre}r0 >>= 1\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"),
        EACCES,
        "R6 unbounded memory access, make sure to bounds check any such access",
    );
    rejects(
        &format!("{pre}r6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"),
        EINVAL,
        "math between map_value pointer and register with unbounded min value is not allowed",
    );
}

#[test]
fn map_value_bounds_check_by_branch() {
    ok(&format!(
        "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall h#7\nif r0 > 7 goto out\nr6 += r0\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
    ));
}

#[test]
fn map_key_uninit() {
    let e = err_with(
        "*(u8 *)(r10 -9) = 0\nr1 = map[id:1]\nr2 = r10\nr2 += -16\ncall h#1\nr0 = 0\nexit",
        Privileges::BPF_ONLY,
    );
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EACCES,
            "invalid indirect read from stack R2 off -16+0 size 4"
        )
    );
}

#[test]
fn helper_arg_types() {
    rejects(
        "r1 = map[id:1]\nr2 = 0\ncall h#1\nr0 = 0\nexit",
        EACCES,
        "R2 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_",
    );
    rejects(
        "r1 = 0\nr2 = r10\ncall h#1\nr0 = 0\nexit",
        EACCES,
        "R1 type=scalar expected=map_ptr",
    );
    rejects(
        "call h#99\nr0 = 0\nexit",
        EINVAL,
        "program of this type cannot use helper bpf_skc_lookup_tcp#99",
    );
    rejects("call h#7\nr0 = r1\nexit", EACCES, "R1 !read_ok");
}

#[test]
fn gpl_only_helper() {
    let info = ProgInfo {
        gpl_compatible: false,
        ..ProgInfo::default()
    };
    let v =
        insns("r1 = r10\nr1 += -8\nr2 = 8\nr0 = 0\n*(u64 *)(r10 -8) = r0\ncall h#6\nr0 = 0\nexit");
    let e = verify(&v, &info, &Mock::default(), &LogOptions::default()).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "cannot call GPL-restricted function from non-GPL compatible program"
        )
    );
}

#[test]
fn mem_size_args() {
    rejects(
        "r1 = r10\nr1 += -8\nr2 = -1\nr3 = 0\ncall h#113\nr0 = 0\nexit",
        EACCES,
        "R2 min value is negative, either use unsigned or 'var &= const'",
    );
}

#[test]
fn helper_writes_uninit_stack() {
    // probe_read_kernel fills its buffer, which may then be read.
    let e = run_with(
        "r1 = r10\nr1 += -8\nr2 = 8\nr3 = 0\ncall h#113\nr0 = *(u64 *)(r10 -8)\nexit",
        Privileges::BPF_ONLY,
    );
    assert!(e.is_ok(), "{:?}", e.err());
    rejects_unpriv(
        "call h#7\nr0 >>= 1\nr1 = r10\nr1 += -8\nr2 = r0\nr3 = 0\ncall h#113\nr0 = 0\nexit",
        EACCES,
        "R2 unbounded memory access, use 'var &= const' or 'if (var < const)'",
    );
}

#[test]
fn ringbuf_reference_leak() {
    let pre = "r1 = map[id:3]\nr2 = 8\nr3 = 0\ncall h#131\n";
    let e = err(&format!(
        "{pre}r0 = 0
exit"
    ));
    assert_eq!(
        e.message,
        "BPF_EXIT instruction in main prog would lead to reference leak"
    );
    assert!(
        e.log.contains(
            "Unreleased reference id=2 alloc_insn=4
"
        ),
        "{}",
        e.log
    );
    rejects(
        &format!("{pre}if r0 == 0x0 goto out\nr0 = 0\nout:\nexit"),
        EINVAL,
        "BPF_EXIT instruction in main prog would lead to reference leak",
    );
    ok(&format!(
        "{pre}if r0 == 0x0 goto out\nr1 = r0\nr2 = 0\ncall h#132\nout:\nr0 = 0\nexit"
    ));
    rejects(
        &format!("{pre}r1 = r0\nr2 = 0\ncall h#132\nr0 = 0\nexit"),
        EACCES,
        "R1 type=ringbuf_mem_or_null expected=ringbuf_mem",
    );
}

#[test]
fn ringbuf_use_after_release() {
    let src = "r1 = map[id:3]\nr2 = 8\nr3 = 0\ncall h#131\nif r0 == 0x0 goto out\nr6 = r0\nr1 = r0\nr2 = 0\ncall h#132\nr0 = *(u64 *)(r6 +0)\nout:\nr0 = 0\nexit";
    rejects(src, EACCES, "R6 invalid mem access 'scalar'");
}

#[test]
fn ringbuf_mem_bounds() {
    let e = err(
        "r1 = map[id:3]\nr2 = 8\nr3 = 0\ncall h#131\nif r0 == 0x0 goto out\nr1 = *(u64 *)(r0 +8)\nr1 = r0\nr2 = 0\ncall h#132\nout:\nr0 = 0\nexit",
    );
    assert_eq!(
        e.message,
        "R0 min value is outside of the allowed memory range"
    );
    assert!(
        e.log
            .contains("invalid access to memory, mem_size=8 off=8 size=8\n"),
        "{}",
        e.log
    );
}

// ---- packets ----

const PKT: &str = "r2 = *(u32 *)(r1 +0)\nr3 = *(u32 *)(r1 +4)\nr4 = r2\nr4 += 14\n";

#[test]
fn packet_access_needs_check() {
    rejects(
        &format!("{PKT}r0 = *(u8 *)(r2 +0)\nexit"),
        EACCES,
        "R2 offset is outside of the packet",
    );
    ok(&format!(
        "{PKT}if r4 > r3 goto out\nr0 = *(u8 *)(r2 +13)\nexit\nout:\nr0 = 0\nexit"
    ));
    rejects(
        &format!("{PKT}if r4 > r3 goto out\nr0 = *(u8 *)(r2 +14)\nexit\nout:\nr0 = 0\nexit"),
        EACCES,
        "R2 offset is outside of the packet",
    );
    ok(&format!(
        "{PKT}if r3 >= r4 goto ok\nr0 = 0\nexit\nok:\nr0 = *(u16 *)(r2 +12)\nexit"
    ));
}

#[test]
fn packet_end_arith() {
    rejects(
        "r3 = *(u32 *)(r1 +4)\nr3 += 1\nr0 = 0\nexit",
        EACCES,
        "R3 pointer arithmetic on pkt_end prohibited",
    );
}

// ---- calls ----

#[test]
fn bpf_to_bpf_call() {
    let p = ok("r1 = 1\ncall f\nexit\nf:\nr0 = r1\nr0 += 1\nexit");
    assert_eq!(p.subprogs(), &[0, 3]);
}

#[test]
fn call_clobbers_caller_saved() {
    rejects(
        "r1 = 1\ncall f\nr0 = r1\nexit\nf:\nr0 = 0\nexit",
        EACCES,
        "R1 !read_ok",
    );
}

#[test]
fn callee_returns_stack_pointer() {
    rejects(
        "call f\nexit\nf:\nr0 = r10\nexit",
        EINVAL,
        "cannot return stack pointer to the caller",
    );
}

#[test]
fn call_depth() {
    let e = err("call f\nexit\nf:\ncall f\nexit");
    assert_eq!(
        (e.errno, e.message.as_str()),
        (E2BIG, "the call stack of 9 frames is too deep")
    );
}

#[test]
fn combined_stack() {
    let e = err(
        "r0 = 0\n*(u64 *)(r10 -512) = r0\ncall f\nexit\nf:\nr0 = 0\n*(u64 *)(r10 -8) = r0\nexit",
    );
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "combined stack size of 2 calls is 528. Too large")
    );
}

#[test]
fn caller_stack_through_pointer() {
    ok(
        "r1 = r10\nr1 += -8\ncall f\nr0 = *(u64 *)(r10 -8)\nexit\nf:\nr0 = 5\n*(u64 *)(r1 +0) = r0\nexit",
    );
}

// ---- returns and branches ----

#[test]
fn return_range() {
    let env = Mock {
        ret: ReturnRule::Range { min: 0, max: 1 },
        ..Mock::default()
    };
    let info = ProgInfo::default();
    let lo = LogOptions::default();
    assert!(verify(&insns("r0 = 1\nexit"), &info, &env, &lo).is_ok());
    let e = verify(&insns("r0 = 2\nexit"), &info, &env, &lo).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "At program exit the register R0 has smin=2 smax=2 should have been in [0, 1]"
        )
    );
}

#[test]
fn dead_branch_not_explored() {
    // r0 is 5, so the bad access is never reached.
    ok("r0 = 5\nif r0 > 7 goto bad\nexit\nbad:\nr0 = *(u64 *)(r0 +0)\nexit");
}

#[test]
fn linked_scalars() {
    // A bound learned on r1 applies to its copy r2.
    ok(&format!(
        "{LOOKUP}if r0 == 0x0 goto out\nr6 = r0\ncall h#7\nr1 = r0\nr2 = r1\nif r1 > 7 goto out\nr6 += r2\nr0 = *(u8 *)(r6 +0)\nout:\nr0 = 0\nexit"
    ));
}

#[test]
fn null_check_propagates_to_copies() {
    ok(&format!(
        "{LOOKUP}r6 = r0\nif r0 == 0x0 goto out\nr0 = *(u64 *)(r6 +0)\nout:\nr0 = 0\nexit"
    ));
}

#[test]
fn pruning_reduces_work() {
    // Eight independent diamonds: without pruning 2^8 paths.
    let mut src = String::from("call h#7\nr6 = r0\nr7 = 0\n");
    for i in 0..8 {
        src.push_str(&format!("if r6 > {i} goto l{i}\nr7 = 0\nl{i}:\n"));
    }
    src.push_str("r0 = r7\nexit\n");
    let p = ok(&src);
    assert!(p.stats().insn_processed < 200, "{}", p.stats().line());
    assert!(p.stats().total_states > 0);
}

#[test]
fn level1_log_shows_failing_path() {
    let e = err("r0 = 0\nr1 = 0\nr0 = *(u32 *)(r1 +0)\nexit");
    assert!(
        e.log.contains("2: (61) r0 = *(u32 *)(r1 +0)\n"),
        "{}",
        e.log
    );
    assert!(e.log.ends_with("R1 invalid mem access 'scalar'\nprocessed 3 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n"), "{}", e.log);
}
