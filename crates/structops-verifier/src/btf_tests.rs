//! Unit tests of typed pointers, struct_ops rules and kfuncs with a small
//! host BTF built by hand: a mock ops type `mock_ops` whose programs get a
//! `struct state *`, may write only `state.val`, and may call a few kfuncs.

use std::collections::HashMap;

use structops_btf::{Btf, BtfBuilder, Linkage};
use structops_isa::assemble;

use crate::env::{
    CtxField, HookError, KfuncDesc, KfuncFlags, LogOptions, MapInfo, MapRef, ProgInfo,
    StructOpsAttach, StructOpsType, VerifierEnv,
};
use crate::error::{EACCES, EINVAL, ENOTSUPP};
use crate::proto::HelperProto;
use crate::{VerifiedProgram, VerifyError, verify};

/// Ids of the mock host BTF.
struct Ids {
    state: u32,
    other: u32,
    ops: u32,
    kfuncs: HashMap<&'static str, u32>,
}

/// ```c
/// struct other { u32 x; };                                   // 4
/// struct inner { u64 a; u64 b; };                            // 16
/// union either { struct other *p; u64 raw; };                // 8
/// struct state {
///     u32 val; u32 pad; struct inner in; struct other *next; // 0, 4, 8, 24
///     u32 arr[4]; union either u; u32 tail[];                // 32, 48, 56
/// };                                                         // 56
/// struct mock_ops {
///     int (*op1)(struct state *s, u32 n);
///     void (*op2)(struct state *s);
///     u32 data;
///     int (*op3)(struct state *s);
/// };
/// void mock_ops__op2(struct state *s__nullable);             // stub
/// struct other *mock_acquire(void);                          // ACQUIRE | RET_NULL
/// void mock_release(struct other *o);                        // RELEASE
/// void mock_sleepy(void);                                    // SLEEPABLE
/// void mock_trusted(struct state *s);                        // TRUSTED_ARGS
/// u32 mock_plain(struct inner *i, u32 n);                    // no flags
/// void mock_forbidden(void);                                 // not registered
/// ```
fn mock_btf() -> (Btf, Ids) {
    let mut b = BtfBuilder::new();
    let u32t = b.add_int("u32", 4, 0);
    let u64t = b.add_int("u64", 8, 0);
    let int = b.add_int("int", 4, 1);
    let other = b.add_struct("other", 4, &[("x", u32t, 0)]);
    let inner = b.add_struct("inner", 16, &[("a", u64t, 0), ("b", u64t, 64)]);
    let other_ptr = b.add_ptr(other);
    let either = b.add_union("either", 8, &[("p", other_ptr, 0), ("raw", u64t, 0)]);
    let arr = b.add_array(u32t, u32t, 4);
    let flex = b.add_array(u32t, u32t, 0);
    let state = b.add_struct(
        "state",
        56,
        &[
            ("val", u32t, 0),
            ("pad", u32t, 32),
            ("in", inner, 64),
            ("next", other_ptr, 192),
            ("arr", arr, 256),
            ("u", either, 384),
            ("tail", flex, 448),
        ],
    );
    let state_ptr = b.add_ptr(state);
    let inner_ptr = b.add_ptr(inner);
    let p1 = b.add_func_proto(int, &[("s", state_ptr), ("n", u32t)]);
    let p1p = b.add_ptr(p1);
    let p2 = b.add_func_proto(0, &[("s", state_ptr)]);
    let p2p = b.add_ptr(p2);
    let p3 = b.add_func_proto(int, &[("s", state_ptr)]);
    let p3p = b.add_ptr(p3);
    let ops = b.add_struct(
        "mock_ops",
        32,
        &[
            ("op1", p1p, 0),
            ("op2", p2p, 64),
            ("data", u32t, 128),
            ("op3", p3p, 192),
        ],
    );
    let stub = b.add_func_proto(0, &[("s__nullable", state_ptr)]);
    b.add_func("mock_ops__op2", stub, Linkage::Static);
    let mut kfuncs = HashMap::new();
    let acq = b.add_func_proto(other_ptr, &[]);
    kfuncs.insert(
        "mock_acquire",
        b.add_func("mock_acquire", acq, Linkage::Global),
    );
    let rel = b.add_func_proto(0, &[("o", other_ptr)]);
    kfuncs.insert(
        "mock_release",
        b.add_func("mock_release", rel, Linkage::Global),
    );
    let void = b.add_func_proto(0, &[]);
    kfuncs.insert(
        "mock_sleepy",
        b.add_func("mock_sleepy", void, Linkage::Global),
    );
    let tr = b.add_func_proto(0, &[("s", state_ptr)]);
    kfuncs.insert(
        "mock_trusted",
        b.add_func("mock_trusted", tr, Linkage::Global),
    );
    let plain = b.add_func_proto(u32t, &[("i", inner_ptr), ("n", u32t)]);
    kfuncs.insert(
        "mock_plain",
        b.add_func("mock_plain", plain, Linkage::Global),
    );
    kfuncs.insert(
        "mock_forbidden",
        b.add_func("mock_forbidden", void, Linkage::Global),
    );
    (
        b.build(),
        Ids {
            state,
            other,
            ops,
            kfuncs,
        },
    )
}

struct MockOps {
    state: u32,
}

impl StructOpsType for MockOps {
    fn name(&self) -> &str {
        "mock_ops"
    }

    fn member_supported(&self, moff: u32) -> bool {
        // op3 has no implementation in the host.
        moff != 24
    }

    fn check_member(&self, _idx: u32, moff: u32, sleepable: bool) -> Result<(), i32> {
        if sleepable && moff != 8 {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn struct_write(
        &self,
        _btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), HookError>> {
        if btf_id != self.state {
            return Some(Err(HookError::eacces("only read is supported")));
        }
        if off != 0 || size > 4 {
            return Some(Err(HookError::eacces(format!(
                "no write support to state at off {off}"
            ))));
        }
        Some(Ok(()))
    }

    fn helper(&self, id: i32, _member_idx: u32) -> Option<HelperProto> {
        crate::tests::mock_helper(id).filter(|p| p.id == 7)
    }
}

struct Env {
    btf: Btf,
    ids: Ids,
    ops: MockOps,
}

impl Env {
    fn new() -> Env {
        let (btf, ids) = mock_btf();
        let ops = MockOps { state: ids.state };
        Env { btf, ids, ops }
    }

    fn kfunc_id(&self, name: &str) -> u32 {
        self.ids.kfuncs[name]
    }
}

impl VerifierEnv for Env {
    fn map(&self, _map: MapRef) -> Option<MapInfo> {
        None
    }

    fn helper(&self, _id: i32) -> Option<HelperProto> {
        None
    }

    fn ctx_access(&self, _off: i32, _size: u32, _write: bool) -> Option<CtxField> {
        None
    }

    fn host_btf(&self) -> Option<&Btf> {
        Some(&self.btf)
    }

    fn struct_ops_type(&self, btf_id: u32) -> Option<&dyn StructOpsType> {
        (btf_id == self.ids.ops).then_some(&self.ops as &dyn StructOpsType)
    }

    fn kfunc(&self, btf_id: u32) -> Option<KfuncDesc> {
        let (name, flags) = [
            (
                "mock_acquire",
                KfuncFlags::ACQUIRE.with(KfuncFlags::RET_NULL),
            ),
            ("mock_release", KfuncFlags::RELEASE),
            ("mock_sleepy", KfuncFlags::SLEEPABLE),
            ("mock_trusted", KfuncFlags::TRUSTED_ARGS),
            ("mock_plain", KfuncFlags::NONE),
        ]
        .into_iter()
        .find(|(n, _)| self.ids.kfuncs[n] == btf_id)?;
        Some(KfuncDesc {
            name: name.to_owned(),
            btf_id,
            flags,
        })
    }
}

/// Verifies `src` as member `member` of `mock_ops`; `kfunc:NAME` becomes
/// the kfunc's call.
fn run_with(
    src: &str,
    member: u32,
    sleepable: bool,
    gpl: bool,
) -> Result<VerifiedProgram, VerifyError> {
    let env = Env::new();
    let mut text = src.to_owned();
    for name in env.ids.kfuncs.keys() {
        text = text.replace(
            &format!("kfunc:{name}"),
            &format!("kernel-function#{}", env.kfunc_id(name)),
        );
    }
    let insns = assemble(&text).unwrap().encode();
    let info = ProgInfo {
        gpl_compatible: gpl,
        sleepable,
        struct_ops: Some(StructOpsAttach {
            btf_id: env.ids.ops,
            member_idx: member,
        }),
        ..ProgInfo::default()
    };
    verify(&insns, &info, &env, &LogOptions::default())
}

fn ok(src: &str) {
    if let Err(e) = run_with(src, 0, false, true) {
        panic!("rejected: {e}\n{src}");
    }
}

fn err(src: &str) -> VerifyError {
    match run_with(src, 0, false, true) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e,
    }
}

/// `r1` = the `struct state *` argument of op1.
const ARG0: &str = "r1 = *(u64 *)(r1 +0)\n";

#[test]
fn reads_inside_members_and_nested_structs() {
    ok(&format!("{ARG0}r0 = *(u32 *)(r1 +0)\nexit"));
    // in.b: a member of a nested struct; a byte in the middle of a u64.
    ok(&format!(
        "{ARG0}r2 = *(u64 *)(r1 +16)\nr2 = *(u8 *)(r1 +19)\nr0 = 0\nexit"
    ));
    // arr[3], and an int array read across elements as scratch space.
    ok(&format!(
        "{ARG0}r2 = *(u32 *)(r1 +44)\nr2 = *(u64 *)(r1 +32)\nr0 = 0\nexit"
    ));
    // The flexible array at the end may be read past the struct's size.
    ok(&format!("{ARG0}r2 = *(u32 *)(r1 +80)\nr0 = 0\nexit"));
}

#[test]
fn loaded_scalars_are_unknown_and_narrowed() {
    // A u32 read is a scalar in [0, u32::MAX]: comparing it with a bigger
    // constant is decided, so the dead branch's bad read is never walked.
    ok(&format!(
        "{ARG0}r2 = *(u32 *)(r1 +0)\nr3 = 1\nr3 <<= 32\nif r2 < r3 goto ok\nr0 = *(u32 *)(r2 +0)\nok:\nr0 = 0\nexit"
    ));
    // But the value itself is unknown: dereferencing it fails.
    let e = err(&format!(
        "{ARG0}r2 = *(u32 *)(r1 +0)\nr0 = *(u32 *)(r2 +0)\nexit"
    ));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "R2 invalid mem access 'scalar'")
    );
}

#[test]
fn out_of_bounds_and_misaligned_pointer_reads_are_rejected() {
    let e = err(&format!(
        "{ARG0}r0 = *(u32 *)(r1 +4)\nr0 = *(u64 *)(r1 +52)\nexit"
    ));
    // The union member at 48 is 8 bytes; 52+8 runs past the struct and
    // does not start inside the flexible array.
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "access beyond struct state at off 52 size 8")
    );
    let e = err(&format!("{ARG0}r0 = *(u32 *)(r1 +24)\nr0 = 0\nexit"));
    assert_eq!(
        e.message,
        "cannot access ptr member next with moff 24 in struct state with off 24 size 4"
    );
    let e = err(&format!("{ARG0}r1 += -8\nr0 = *(u32 *)(r1 +0)\nexit"));
    assert_eq!(e.message, "R1 is ptr_state invalid negative access: off=-8");
    let e = err(&format!(
        "r2 = *(u64 *)(r1 +8)\n{ARG0}r2 &= 4\nr1 += r2\nr0 = *(u32 *)(r1 +0)\nexit"
    ));
    assert_eq!(
        e.message,
        "R1 is ptr_state invalid variable offset: off=0, var_off=(0x0; 0x4)"
    );
}

#[test]
fn access_beyond_the_struct_names_it() {
    let env = Env::new();
    // A struct without a flexible array: `other` is 4 bytes.
    let loaded = crate::btf_ptr::struct_access(&env.btf, env.ids.other, 4, 4).unwrap_err();
    assert_eq!(
        (loaded.errno, loaded.message.as_str()),
        (EACCES, "access beyond struct other at off 4 size 4")
    );
    let loaded = crate::btf_ptr::struct_access(&env.btf, env.ids.other, 2, 4).unwrap_err();
    assert_eq!(loaded.message, "access beyond struct other at off 2 size 4");
}

#[test]
fn pointer_members_become_typed_pointers() {
    // next is a plain (non-trusted) pointer to `other`: readable.
    ok(&format!(
        "{ARG0}r2 = *(u64 *)(r1 +24)\nr0 = *(u32 *)(r2 +0)\nexit"
    ));
    // Writing through it goes to the ops type's hook, which refuses.
    let e = err(&format!(
        "{ARG0}r2 = *(u64 *)(r1 +24)\nr3 = 1\n*(u32 *)(r2 +0) = r3\nr0 = 0\nexit"
    ));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "only read is supported")
    );
    // Through a union with two members the pointer is untrusted.
    let e = err(&format!(
        "{ARG0}r2 = *(u64 *)(r1 +48)\nr3 = 1\n*(u32 *)(r2 +0) = r3\nr0 = 0\nexit"
    ));
    assert_eq!(e.message, "only read is supported");
    // A pointer read from a pointer is not a helper-usable trusted one:
    // arithmetic and reads only.
    ok(&format!(
        "{ARG0}r2 = *(u64 *)(r1 +48)\nr0 = *(u32 *)(r2 +0)\nexit"
    ));
}

#[test]
fn writes_only_where_the_hook_allows() {
    ok(&format!("{ARG0}r2 = 5\n*(u32 *)(r1 +0) = r2\nr0 = 0\nexit"));
    ok(&format!("{ARG0}*(u32 *)(r1 +0) = 5\nr0 = 0\nexit"));
    let e = err(&format!("{ARG0}*(u32 *)(r1 +4) = 5\nr0 = 0\nexit"));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "no write support to state at off 4")
    );
    let e = err(&format!("{ARG0}*(u64 *)(r1 +0) = 5\nr0 = 0\nexit"));
    assert_eq!(e.message, "no write support to state at off 0");
    // Atomics read and write: the hook decides the write.
    ok(&format!(
        "{ARG0}r2 = 1\nlock *(u32 *)(r1 +0) += r2\nr0 = 0\nexit"
    ));
    let e = err(&format!(
        "{ARG0}r2 = 1\nlock *(u32 *)(r1 +4) += r2\nr0 = 0\nexit"
    ));
    assert_eq!(e.message, "no write support to state at off 4");
}

#[test]
fn ctx_is_the_member_arguments() {
    // op1(struct state *s, u32 n): 8-byte slots, arg1 a scalar.
    ok("r2 = *(u64 *)(r1 +8)\nr0 = r2\nexit");
    ok("r2 = *(u32 *)(r1 +8)\nr0 = 0\nexit");
    let e = err("r2 = *(u64 *)(r1 +16)\nr0 = 0\nexit");
    assert_eq!(e.message, "invalid bpf_context access off=16 size=8");
    let e = err("r2 = *(u32 *)(r1 +0)\nr0 = 0\nexit");
    assert_eq!(e.message, "invalid bpf_context access off=0 size=4");
    let e = err("r2 = 0\n*(u64 *)(r1 +0) = r2\nr0 = 0\nexit");
    assert_eq!(e.message, "invalid bpf_context access off=0 size=8");
    // The pointer argument is trusted and non-NULL: deref without a check.
    ok(&format!("{ARG0}r0 = *(u32 *)(r1 +0)\nexit"));
}

#[test]
fn nullable_stub_arguments_need_a_null_check() {
    // op2's stub names its argument s__nullable.
    let src = "r1 = *(u64 *)(r1 +0)\nr0 = *(u32 *)(r1 +0)\nexit";
    let e = run_with(src, 1, false, true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "R1 invalid mem access 'trusted_ptr_or_null_'")
    );
    let src = "r1 = *(u64 *)(r1 +0)\nif r1 == 0 goto out\nr0 = *(u32 *)(r1 +0)\nout:\nexit";
    run_with(src, 1, false, true).unwrap();
}

#[test]
fn return_values_follow_the_member() {
    // op2 returns void: r0 is not looked at.
    run_with("exit", 1, false, true).unwrap();
    let e = err("exit");
    assert_eq!((e.errno, e.message.as_str()), (EACCES, "R0 !read_ok"));
}

#[test]
fn attach_rules() {
    let e = run_with("r0 = 0\nexit", 0, false, false).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "struct ops programs must have a GPL compatible license"
        )
    );
    let e = run_with("r0 = 0\nexit", 4, false, true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EINVAL, "attach to invalid member idx 4 of struct mock_ops")
    );
    let e = run_with("r0 = 0\nexit", 2, false, true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "attach to invalid member data(@idx 2) of struct mock_ops"
        )
    );
    let e = run_with("r0 = 0\nexit", 3, false, true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            ENOTSUPP,
            "attach to unsupported member op3 of struct mock_ops"
        )
    );
    // check_member: only op2 may be sleepable.
    let e = run_with("r0 = 0\nexit", 0, true, true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "attach to unsupported member op1 of struct mock_ops"
        )
    );
    run_with("exit", 1, true, true).unwrap();
    // Not a registered ops type.
    let env = Env::new();
    let info = ProgInfo {
        gpl_compatible: true,
        struct_ops: Some(StructOpsAttach {
            btf_id: env.ids.state,
            member_idx: 0,
        }),
        ..ProgInfo::default()
    };
    let insns = assemble("r0 = 0\nexit").unwrap().encode();
    let e = verify(&insns, &info, &env, &LogOptions::default()).unwrap_err();
    assert_eq!(
        (e.errno, e.message),
        (
            ENOTSUPP,
            format!("attach_btf_id {} is not a supported struct", env.ids.state)
        )
    );
}

#[test]
fn helpers_come_from_the_ops_type() {
    ok("call bpf_get_prandom_u32\nexit");
    let e = err("call bpf_ktime_get_ns\nexit");
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "program of this type cannot use helper bpf_ktime_get_ns#5"
        )
    );
}

#[test]
fn kfunc_references_must_be_released() {
    ok(
        "call kfunc:mock_acquire\nif r0 == 0 goto out\nr1 = r0\ncall kfunc:mock_release\nout:\nr0 = 0\nexit",
    );
    let e = err("call kfunc:mock_acquire\nr0 = 0\nexit");
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "BPF_EXIT instruction in main prog would lead to reference leak"
        )
    );
    // The acquired pointer may be NULL until checked.
    let e = err("call kfunc:mock_acquire\nr1 = *(u32 *)(r0 +0)\nr0 = 0\nexit");
    assert_eq!(e.message, "R0 invalid mem access 'ptr_or_null_'");
    // Releasing something that holds no reference.
    let e = err(&format!(
        "{ARG0}r1 = *(u64 *)(r1 +24)\ncall kfunc:mock_release\nr0 = 0\nexit"
    ));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "release kernel function mock_release expects refcounted PTR_TO_BTF_ID"
        )
    );
    // After release the pointer is gone.
    let e = err(
        "call kfunc:mock_acquire\nif r0 == 0 goto out\nr6 = r0\nr1 = r0\ncall kfunc:mock_release\nr0 = *(u32 *)(r6 +0)\nout:\nr0 = 0\nexit",
    );
    assert_eq!(e.errno, EACCES, "{e}");
}

#[test]
fn kfunc_arguments_are_checked_against_the_prototype() {
    let e = err("r1 = 0\ncall kfunc:mock_trusted\nr0 = 0\nexit");
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "Possibly NULL pointer passed to trusted arg0")
    );
    ok(&format!("{ARG0}call kfunc:mock_trusted\nr0 = 0\nexit"));
    // A pointer read from the struct is not trusted (checked before its type).
    let e = err(&format!(
        "{ARG0}r1 = *(u64 *)(r1 +24)\ncall kfunc:mock_trusted\nr0 = 0\nexit"
    ));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EINVAL, "R1 must be referenced or trusted")
    );
    // A struct pointer where a different struct is expected; `in` sits at
    // offset 8 of state, so state+8 is an `inner` by the nested walk.
    ok(&format!(
        "{ARG0}r1 += 8\nr2 = 3\ncall kfunc:mock_plain\nexit"
    ));
    let e = err(&format!("{ARG0}r2 = 3\ncall kfunc:mock_plain\nexit"));
    assert_eq!(
        e.message,
        "kernel function mock_plain args#0 expected pointer to STRUCT inner but R1 has a pointer to STRUCT state"
    );
    // Scalars for scalar parameters.
    let e = err(&format!(
        "{ARG0}r1 += 8\nr2 = r1\ncall kfunc:mock_plain\nexit"
    ));
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EINVAL, "R2 is not a scalar")
    );
    // Stack memory for a scalar-only struct.
    ok(
        "*(u64 *)(r10 -16) = 0\n*(u64 *)(r10 -8) = 0\nr1 = r10\nr1 += -16\nr2 = 1\ncall kfunc:mock_plain\nexit",
    );
    // 16 bytes at fp-8 run past the frame (EINVAL, as check_stack_access_within_bounds).
    let e = err("*(u64 *)(r10 -8) = 0\nr1 = r10\nr1 += -8\nr2 = 1\ncall kfunc:mock_plain\nexit");
    assert_eq!(e.errno, EINVAL, "{e}");
    // The return value is a scalar; r1-r5 are clobbered.
    let e = err(&format!(
        "{ARG0}r1 += 8\nr2 = 3\ncall kfunc:mock_plain\nr0 = r1\nexit"
    ));
    assert_eq!(e.message, "R1 !read_ok");
}

#[test]
fn kfunc_availability() {
    let e = err("call kfunc:mock_forbidden\nr0 = 0\nexit");
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EACCES,
            "calling kernel function mock_forbidden is not allowed"
        )
    );
    let e = err("call kfunc:mock_sleepy\nr0 = 0\nexit");
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EACCES,
            "program must be sleepable to call sleepable kfunc mock_sleepy"
        )
    );
    run_with("call kfunc:mock_sleepy\nexit", 1, true, true).unwrap();
    // Host function calls need a GPL-compatible license (checked before
    // the struct_ops attach rules, as add_kfunc_call runs first).
    let e = run_with("call kfunc:mock_sleepy\nr0 = 0\nexit", 0, false, false).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            EINVAL,
            "cannot call kernel function from non-GPL compatible program"
        )
    );
    let e = err("call kernel-function#1\nr0 = 0\nexit");
    assert_eq!(e.message, "kernel btf_id 1 is not a function");
}

#[test]
fn typed_pointers_need_perfmon() {
    let env = Env::new();
    let info = ProgInfo {
        gpl_compatible: true,
        privileges: crate::env::Privileges::BPF_ONLY,
        struct_ops: Some(StructOpsAttach {
            btf_id: env.ids.ops,
            member_idx: 0,
        }),
        ..ProgInfo::default()
    };
    let insns = assemble(&format!("{ARG0}r0 = *(u32 *)(r1 +0)\nexit"))
        .unwrap()
        .encode();
    let e = verify(&insns, &info, &env, &LogOptions::default()).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            crate::error::EPERM,
            "'struct state' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN"
        )
    );
}

/// A host BTF with the kernel's array map struct, reduced to what the
/// tests read:
///
/// ```c
/// struct bpf_map_ops { u64 f; };
/// struct bpf_map { const struct bpf_map_ops *ops; u32 map_type; u32 key_size;
///                  u32 value_size; u32 max_entries; };          // 0, 8, 12, 16, 20
/// struct bpf_array { struct bpf_map map; u32 elem_size; };      // 0, 24
/// ```
struct MapEnv {
    btf: Btf,
    map_type: u32,
}

impl VerifierEnv for MapEnv {
    fn map(&self, map: MapRef) -> Option<MapInfo> {
        (map == MapRef::Fd(3)).then(|| MapInfo {
            map_type: self.map_type,
            key_size: 4,
            value_size: 8,
            max_entries: 5,
            flags: 0,
            rdonly_prog: false,
            wronly_prog: false,
            frozen_value: None,
            name: "m".into(),
            direct_value: true,
        })
    }

    fn helper(&self, _id: i32) -> Option<HelperProto> {
        None
    }

    fn ctx_access(&self, _off: i32, _size: u32, _write: bool) -> Option<CtxField> {
        None
    }

    fn host_btf(&self) -> Option<&Btf> {
        Some(&self.btf)
    }
}

fn map_env(map_type: u32) -> MapEnv {
    let mut b = BtfBuilder::new();
    let u32t = b.add_int("u32", 4, 0);
    let u64t = b.add_int("u64", 8, 0);
    let ops = b.add_struct("bpf_map_ops", 8, &[("f", u64t, 0)]);
    let cops = b.add_const(ops);
    let ops_ptr = b.add_ptr(cops);
    let map = b.add_struct(
        "bpf_map",
        24,
        &[
            ("ops", ops_ptr, 0),
            ("map_type", u32t, 64),
            ("key_size", u32t, 96),
            ("value_size", u32t, 128),
            ("max_entries", u32t, 160),
        ],
    );
    b.add_struct(
        "bpf_array",
        28,
        &[("map", map, 0), ("elem_size", u32t, 192)],
    );
    MapEnv {
        btf: b.build(),
        map_type,
    }
}

fn map_run(env: &MapEnv, src: &str, privileged: bool) -> Result<VerifiedProgram, VerifyError> {
    let insns = assemble(&format!("r1 = map[id:3]\n{src}"))
        .unwrap()
        .encode();
    let info = ProgInfo {
        gpl_compatible: true,
        privileges: if privileged {
            crate::env::Privileges::ROOT
        } else {
            crate::env::Privileges::BPF_ONLY
        },
        ..ProgInfo::default()
    };
    verify(&insns, &info, env, &LogOptions::default())
}

#[test]
fn map_pointer_reads_follow_the_maps_kernel_struct() {
    let env = map_env(2);
    // max_entries of the array's struct bpf_map: a scalar, recorded for the runtime.
    let p = map_run(&env, "r0 = *(u32 *)(r1 +20)\nexit", true).unwrap();
    assert_eq!(
        p.map_ptr_loads(),
        &[crate::MapPtrLoad {
            pc: 2,
            off: 20,
            size: 4,
            maps: vec![Some(MapRef::Fd(3))],
        }]
    );
    // The scalar is unknown: using it as a pointer fails.
    let e = map_run(
        &env,
        "r0 = *(u32 *)(r1 +20)\nr0 = *(u8 *)(r0 +0)\nexit",
        true,
    )
    .unwrap_err();
    assert_eq!(e.message, "R0 invalid mem access 'scalar'");
    // The ops pointer is a PTR_TO_BTF_ID of bpf_map_ops: readable.
    map_run(
        &env,
        "r2 = *(u64 *)(r1 +0)\nr0 = *(u64 *)(r2 +0)\nexit",
        true,
    )
    .unwrap();
    // A member of the array's own struct past bpf_map.
    map_run(&env, "r0 = *(u32 *)(r1 +24)\nexit", true).unwrap();
    let e = map_run(&env, "r0 = *(u32 *)(r1 +28)\nexit", true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "access beyond struct bpf_array at off 28 size 4")
    );
    let e = map_run(&env, "r2 = 1\n*(u32 *)(r1 +20) = r2\nr0 = 0\nexit", true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (EACCES, "only read from bpf_array is supported")
    );
    let e = map_run(&env, "r0 = *(u32 *)(r1 -4)\nexit", true).unwrap_err();
    assert_eq!(e.message, "R1 is bpf_array invalid negative access: off=-4");
    let e = map_run(&env, "r0 = *(u32 *)(r1 +20)\nexit", false).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (
            crate::error::EPERM,
            "'struct bpf_array' access is allowed only to CAP_PERFMON and CAP_SYS_ADMIN"
        )
    );
    // A hash map's struct is not in this host BTF.
    let e = map_run(&map_env(1), "r0 = *(u32 *)(r1 +20)\nexit", true).unwrap_err();
    assert_eq!(
        (e.errno, e.message.as_str()),
        (ENOTSUPP, "map_ptr access not supported for map type 1")
    );
}
