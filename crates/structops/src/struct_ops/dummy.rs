//! `bpf_dummy_ops`: the twin of the kernel's `net/bpf/bpf_dummy_struct_ops.c`, the ops
//! type that exists only to test struct_ops programs with `BPF_PROG_TEST_RUN`.
//!
//! ```c
//! struct bpf_dummy_ops_state { int val; };
//! struct bpf_dummy_ops {
//!     int (*test_1)(struct bpf_dummy_ops_state *cb);          /* cb is __nullable */
//!     int (*test_2)(struct bpf_dummy_ops_state *cb, int a1, unsigned short a2,
//!                   char a3, unsigned long a4);
//!     int (*test_sleepable)(struct bpf_dummy_ops_state *cb);
//! };
//! ```
//!
//! As in the kernel: `init_member` refuses every member and `reg` is `EOPNOTSUPP` (so its
//! maps can be created but never updated or attached); only `test_sleepable` may be
//! implemented by a sleepable program; programs call no helpers (its verifier ops have
//! no `get_func_proto`; kfuncs registered for struct_ops remain callable) and may write
//! only inside the `bpf_dummy_ops_state`. Test runs of its programs
//! ([`Runtime::prog_test_run`]) follow `bpf_struct_ops_test_run`: one `u64` per argument
//! in `ctx_in`; `args[0]` non-zero means "a state": the state's value comes from
//! [`crate::TestRun::dummy_state`] (the kernel copies it from the user pointer in
//! `args[0]`) and is written back after the run; zero for a pointer argument that is not
//! `__nullable` is `EINVAL`.

use std::sync::Arc;

use structops_btf::BtfBuilder;
use structops_btf::{Btf, INT_SIGNED, Kind, TypeId, TypeKind};
use structops_vm::{Access, Region};

use super::{Link, MemberInfo, OpsTable, OpsType, StructOps, StructOpsDesc, run_member};
use crate::errno::Errno;
use crate::prog::Prog;
use crate::runtime::Runtime;
use crate::test_run::{RunFault, TestRun};

/// The ops type's name.
pub const NAME: &str = "bpf_dummy_ops";
/// The state struct's name.
pub const STATE_NAME: &str = "bpf_dummy_ops_state";
/// `sizeof(struct bpf_dummy_ops_state)`.
pub const STATE_SIZE: usize = 4;

/// The callbacks of `bpf_dummy_ops` (`bpf_bpf_dummy_ops`).
#[derive(Debug, Default)]
pub struct DummyOps;

impl StructOps for DummyOps {
    /// `bpf_dummy_ops_check_member`: sleepable programs only for `test_sleepable`.
    fn check_member(&self, member: &MemberInfo, sleepable: bool) -> Result<(), Errno> {
        if sleepable && member.name != "test_sleepable" {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `bpf_dummy_verifier_ops` has no `get_func_proto`: no helper at all.
    fn helper_allowed(&self, _: i32, _: &MemberInfo) -> bool {
        false
    }

    /// `bpf_dummy_init_member`: every member is refused.
    fn init_member(&self, _: &MemberInfo, _: &mut [u8], _: &[u8]) -> Result<bool, Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// `bpf_dummy_reg`.
    fn reg(&self, _: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    /// `bpf_dummy_unreg`.
    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {}

    /// `bpf_dummy_ops_btf_struct_access`.
    fn struct_write(
        &self,
        btf: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), String>> {
        let state = btf.find_by_name_kind(STATE_NAME, Kind::Struct);
        if state != Some(btf_id) {
            return Some(Err(
                "only access to bpf_dummy_ops_state is supported".to_string()
            ));
        }
        if i64::from(off) + i64::from(size) > STATE_SIZE as i64 {
            return Some(Err(format!("write access at off {off} with size {size}")));
        }
        Some(Ok(()))
    }
}

/// The registration of `bpf_dummy_ops`: its callbacks, `test_1`'s argument `__nullable`.
pub fn desc() -> StructOpsDesc {
    StructOpsDesc::new(NAME, Arc::new(DummyOps)).nullable("test_1", 0)
}

/// Adds `bpf_dummy_ops_state`, `bpf_dummy_ops` and its value type (with the common
/// header) to a host BTF being built, with the kernel's layout. Returns the ops struct's
/// id.
pub fn add_btf(b: &mut BtfBuilder) -> TypeId {
    let int = b.add_int("int", 4, INT_SIGNED);
    let ushort = b.add_int("short unsigned int", 2, 0);
    let chr = b.add_int("char", 1, 0);
    let ulong = b.add_int("long unsigned int", 8, 0);
    let state = b.add_struct(STATE_NAME, 4, &[("val", int, 0)]);
    let pstate = b.add_ptr(state);
    let p1 = b.add_func_proto(int, &[("", pstate)]);
    let fp1 = b.add_ptr(p1);
    let p2 = b.add_func_proto(
        int,
        &[
            ("", pstate),
            ("", int),
            ("", ushort),
            ("", chr),
            ("", ulong),
        ],
    );
    let fp2 = b.add_ptr(p2);
    let ops = b.add_struct(
        NAME,
        24,
        &[
            ("test_1", fp1, 0),
            ("test_2", fp2, 64),
            ("test_sleepable", fp1, 128),
        ],
    );
    // `add_value_type` only fails for a non-struct id.
    let _ = super::add_value_type(b, ops, NAME);
    ops
}

impl Runtime {
    /// Registers the `bpf_dummy_ops` twin (its types must be in the host BTF: vmlinux
    /// has them, [`add_btf`] adds them).
    ///
    /// A struct_ops program of `bpf/dummy_ops.bpf.c` run with [`Runtime::prog_test_run`],
    /// as the kernel's selftests run them:
    ///
    /// ```
    /// use structops::loader::{LoadOptions, ObjectLoader};
    /// use structops::struct_ops::dummy;
    /// use structops::{Errno, Runtime, TestRun};
    /// use structops_btf::{BtfBuilder, Linkage};
    ///
    /// let rt = Runtime::default();
    /// let mut btf = BtfBuilder::new();
    /// dummy::add_btf(&mut btf);
    /// // The object's `__ksym` externs resolve by name in the host BTF, as libbpf
    /// // resolves them in vmlinux.
    /// let void_fn = btf.add_func_proto(0, &[]);
    /// for name in ["bpf_rcu_read_lock", "bpf_rcu_read_unlock"] {
    ///     btf.add_func(name, void_fn, Linkage::Global);
    /// }
    /// rt.register_host_btf(btf.build())?;
    /// rt.register_dummy_ops()?;
    ///
    /// let bytes = include_bytes!("../../../../bpf/dummy_ops.bpf.o");
    /// let mut loader = ObjectLoader::open(bytes, "dummy_ops.bpf.o")?;
    /// // Leave out the table whose sleepable program calls those kfuncs (this host
    /// // implements none): libbpf then leaves its programs unloaded too.
    /// loader.object_mut().map_mut("dummy_ops").expect("present").set_autocreate(false);
    /// let obj = loader.load(&rt, &LoadOptions::default())?;
    /// assert!(obj.prog("dummy_test_sleepable").is_none());
    /// let prog = obj.prog("dummy_plain_test_1").expect("loaded");
    ///
    /// // test_1(state): one u64 per argument; a non-zero args[0] stands for the state,
    /// // whose value goes in (and comes back) in `dummy_state`. The program returns
    /// // state->val * scale + bias (.rodata scale = 2, .data bias = 3), or -1 * 2 + 3
    /// // without a state: test_1's argument is __nullable.
    /// let mut run = TestRun::with_ctx(&1u64.to_ne_bytes());
    /// run.dummy_state = Some(10);
    /// rt.prog_test_run(prog, &mut run)?;
    /// assert_eq!((run.retval, run.dummy_state), (23, Some(10)));
    /// let mut run = TestRun::with_ctx(&0u64.to_ne_bytes());
    /// rt.prog_test_run(prog, &mut run)?;
    /// assert_eq!(run.retval, 1);
    ///
    /// // As in the kernel, a bpf_dummy_ops table can never be registered.
    /// let attach = obj.attach_struct_ops(&rt, "dummy_ops_link");
    /// assert_eq!(attach.map_err(|e| e.errno()).err(), Some(Errno::EOPNOTSUPP));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register_dummy_ops(&self) -> Result<Arc<OpsType>, Errno> {
        self.register_struct_ops(desc())
    }

    /// The registered `bpf_dummy_ops`, if any.
    pub(crate) fn dummy_ops(&self) -> Option<Arc<OpsType>> {
        self.struct_ops_types()
            .into_iter()
            .find(|t| t.name() == NAME)
    }
}

/// Is `id` (after modifiers and typedefs) a pointer?
fn is_ptr(btf: &Btf, id: TypeId) -> bool {
    btf.resolved_ty(id)
        .is_ok_and(|(_, t)| matches!(t.kind, TypeKind::Ptr { .. }))
}

/// `bpf_struct_ops_test_run` for a program of the registered `bpf_dummy_ops` type `ty`.
pub(crate) fn dummy_test_run(
    rt: &Runtime,
    ty: &OpsType,
    prog: &Prog,
    t: &mut TestRun,
) -> Result<(), Errno> {
    if prog.attach_btf_id() != ty.type_id() {
        return Err(Errno::EOPNOTSUPP);
    }
    let member = ty
        .members()
        .get(prog.expected_attach_type().0 as usize)
        .ok_or(Errno::EINVAL)?;
    let proto = member.func_proto().ok_or(Errno::EINVAL)?;
    let btf = ty.btf().btf();
    let (_, params) = btf.func_proto(proto).map_err(|_| Errno::EINVAL)?;
    let nargs = params.len();
    let ctx_in = t.ctx_in.as_deref().unwrap_or(&[]);
    if ctx_in.len() != 8 * nargs {
        return Err(Errno::EINVAL);
    }
    let mut args: Vec<u64> = ctx_in
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect();
    // `dummy_ops_init_args`: a non-zero args[0] is the user's state.
    let has_state = args.first().is_some_and(|&a| a != 0);
    let mut state = [0u8; 8];
    if has_state {
        let v = t.dummy_state.ok_or(Errno::EFAULT)?;
        state[..4].copy_from_slice(&v.to_ne_bytes());
    }
    // `check_test_run_args`.
    for (i, p) in params.iter().enumerate() {
        if args.get(i).copied().unwrap_or(0) != 0 || !is_ptr(btf, p.ty) {
            continue;
        }
        if member.arg_info(i as u32).is_some_and(|a| a.nullable) {
            continue;
        }
        return Err(Errno::EINVAL);
    }
    let state_addr = state.as_mut_ptr().expose_provenance() as u64;
    if has_state && let Some(a0) = args.first_mut() {
        *a0 = state_addr;
    }
    if args.is_empty() {
        args.push(0);
    }
    let ret = {
        // SAFETY: `state` lives on this frame for the whole run and is only accessed
        // through the program's raw pointer while it runs.
        let region = unsafe { Region::from_raw_parts(state_addr, STATE_SIZE, Access::ReadWrite) };
        let extra: &[Region<'_>] = if has_state { &[region] } else { &[] };
        run_member(rt, prog, &mut args, extra, false)
    };
    let r0 = match ret {
        Ok(r) => r,
        Err(super::CallError::Vm(e)) => {
            t.fault = Some(RunFault::Vm(e));
            return Err(Errno::EFAULT);
        }
        Err(super::CallError::Exec(e)) => {
            t.fault = Some(RunFault::Exec(e));
            return Err(Errno::EFAULT);
        }
        Err(_) => return Err(Errno::EACCES),
    };
    if has_state {
        let mut v = [0u8; 4];
        v.copy_from_slice(&state[..4]);
        t.dummy_state = Some(i32::from_ne_bytes(v));
    }
    t.retval = r0 as u32;
    Ok(())
}
