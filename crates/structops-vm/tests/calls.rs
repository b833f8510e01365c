//! bpf-to-bpf calls, helpers, kfuncs, callbacks, tail calls, packet loads
//! and `LD_IMM64` resolution through an environment.

mod common;

use std::ffi::c_void;

use common::{both, both_env, checked, checked_env, code};
use structops_isa::{Imm64, Width};
use structops_vm::{
    Access, Caller, Code, Engine, Env, Interpreter, MAX_CALL_FRAMES, MAX_TAIL_CALL_CNT, NativeCall,
    NoEnv, Region, TailCallTarget, VmError,
};

#[test]
fn callee_saved_registers_survive_a_call() {
    let src = "
        r6 = 6
        r7 = 7
        r8 = 8
        r9 = 9
        *(u64 *)(r10 -8) = r9
        call f
        r0 += r6
        r0 += r7
        r0 += r8
        r0 += r9
        r1 = *(u64 *)(r10 -8)
        r0 += r1
        exit
    f:
        r6 = 0
        r7 = 0
        r8 = 0
        r9 = 0
        *(u64 *)(r10 -8) = 1000
        r0 = 100
        exit
    ";
    assert_eq!(both(src), 100 + 6 + 7 + 8 + 9 + 9);
}

#[test]
fn arguments_and_return_value_pass_through_registers() {
    let src = "
        r1 = 40
        r2 = 2
        call add
        exit
    add:
        r0 = r1
        r0 += r2
        exit
    ";
    assert_eq!(both(src), 42);
}

#[test]
fn callee_gets_its_own_frame_and_can_use_the_callers_through_a_pointer() {
    let src = "
        *(u64 *)(r10 -8) = 5
        r1 = r10
        r1 += -8
        call f
        r0 = *(u64 *)(r10 -8)
        exit
    f:
        *(u64 *)(r10 -8) = 77
        r2 = *(u64 *)(r1 +0)
        r2 *= 3
        *(u64 *)(r1 +0) = r2
        exit
    ";
    assert_eq!(both(src), 15);
}

/// `main` calls `f` with `r1 = n`; `f` recurses until `r1` reaches 0.
fn recursion(n: u64) -> Result<u64, VmError> {
    checked(&format!(
        "r1 = {n}\ncall f\nexit\nf:\nr1 -= 1\nif r1 == 0 goto done\ncall f\ndone:\nr0 = 42\nexit"
    ))
}

#[test]
fn call_depth_is_limited_to_eight_frames() {
    // main plus n frames of f.
    let n = (MAX_CALL_FRAMES - 1) as u64;
    assert_eq!(recursion(n).expect("eight frames are fine"), 42);
    let err = recursion(n + 1).unwrap_err();
    // The failing call is the one inside `f` (slot 5).
    assert!(
        matches!(
            err,
            VmError::CallDepthExceeded {
                pc: 5,
                max_frames: 8
            }
        ),
        "{err}"
    );
}

#[test]
fn deep_recursion_with_stack_use_in_every_frame() {
    // Each frame stores its depth, recurses, and checks it afterwards.
    let src = "
        r1 = 7
        call f
        exit
    f:
        *(u64 *)(r10 -512) = r1
        r0 = 0
        if r1 == 1 goto out
        r1 -= 1
        call f
        r1 = *(u64 *)(r10 -512)
        r0 += r1
    out:
        exit
    ";
    // Sum of 2..=7 (the innermost frame returns 0).
    assert_eq!(both(src), 27);
}

/// An environment with a few helpers, a kfunc, a packet and a program
/// array, counting what it is asked.
#[derive(Default)]
struct TestEnv {
    value: [u64; 4],
    grant_values: bool,
    programs: Vec<Option<Code>>,
    helper_calls: usize,
    packet: Vec<u8>,
}

const MAP: u64 = 0xabc;
const HELPER_NATIVE_TEST: i32 = 1000;

unsafe extern "C" fn native_sum(a: u64, b: u64, c: u64, d: u64, e: u64, data: *mut c_void) -> u64 {
    // SAFETY: `data` is the `&'static u64` the environment passes.
    let bias = unsafe { *data.cast::<u64>() };
    a + b + c + d + e + bias
}

static BIAS: u64 = 1_000_000;

impl Env for TestEnv {
    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        self.helper_calls += 1;
        match id {
            // bpf_map_lookup_elem(map, key): our one value.
            1 => {
                let addr = self.value.as_mut_ptr() as u64;
                if self.grant_values {
                    // SAFETY: `self.value` outlives the run and is only
                    // accessed through the program meanwhile.
                    unsafe { caller.grant(addr, 32, Access::ReadWrite) };
                }
                Ok(addr)
            }
            // bpf_probe_read_kernel(dst, size, src): copy from a host
            // buffer into program memory.
            113 => {
                let data = [0x5au8; 16];
                let len = usize::try_from(args[1]).unwrap_or(usize::MAX).min(16);
                caller.write(args[0], &data[..len])?;
                Ok(0)
            }
            // bpf_loop(nr, callback, ctx, flags).
            181 => {
                let mut i = 0;
                while i < args[0] {
                    if caller.call_function(self, args[1], [i, args[2], 0, 0, 0])? != 0 {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                Ok(i)
            }
            // bpf_ringbuf_submit-like: revokes a granted region.
            132 => Ok(u64::from(caller.revoke(args[0]))),
            HELPER_NATIVE_TEST => Ok(args.iter().sum()),
            _ => Err(VmError::UnknownHelper { pc, id }),
        }
    }

    fn native_helper(&self, id: i32) -> Option<NativeCall> {
        (id == HELPER_NATIVE_TEST).then_some(NativeCall {
            func: native_sum,
            data: (&raw const BIAS).cast_mut().cast(),
        })
    }

    fn call_kfunc(
        &mut self,
        pc: usize,
        btf_id: u32,
        off: i16,
        args: [u64; 5],
        _caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        if btf_id == 77 && off == 0 {
            Ok(args[0] * 1000 + args[4])
        } else {
            Err(VmError::UnknownKfunc { pc, btf_id, off })
        }
    }

    fn resolve_imm64(&mut self, pc: usize, imm: &Imm64) -> Result<u64, VmError> {
        match *imm {
            Imm64::MapFd { fd: 5 } => Ok(MAP),
            Imm64::MapValue { fd: 5, offset } => Ok(self.value.as_ptr() as u64 + u64::from(offset)),
            _ => Err(VmError::UnresolvedImm64 {
                pc,
                src: imm.pseudo_src(),
            }),
        }
    }

    fn tail_call(&mut self, _pc: usize, map: u64, index: u32) -> Result<TailCallTarget, VmError> {
        assert_eq!(map, MAP, "the program array arrives in r2");
        Ok(match self.programs.get(index as usize) {
            None => TailCallTarget::OutOfRange,
            Some(None) => TailCallTarget::Empty,
            Some(Some(code)) => TailCallTarget::Program(code.clone()),
        })
    }

    fn load_packet(
        &mut self,
        _pc: usize,
        _ctx: u64,
        offset: i32,
        width: Width,
    ) -> Result<Option<u64>, VmError> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(None);
        };
        let bytes = self.packet.get(start..start + width.bytes());
        Ok(bytes.map(|b| b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x))))
    }
}

#[test]
fn helpers_receive_arguments_and_set_r0() {
    let mut env = TestEnv::default();
    let src = "r1 = 1\nr2 = 2\nr3 = 3\nr4 = 4\nr5 = 5\ncall unknown#1000\nexit";
    // Checked runs go through `call_helper`...
    assert_eq!(checked_env(&mut env, src).expect("runs"), 15);
    assert_eq!(env.helper_calls, 1);
    // ...unchecked runs call the native function directly.
    let code = code(src);
    // SAFETY: no memory accesses; the native helper only adds.
    let r0 = unsafe { Interpreter::new().run_unchecked(&code, &mut env, 0) }.expect("runs");
    assert_eq!(r0, 15 + BIAS);
    assert_eq!(env.helper_calls, 1, "the native path bypasses call_helper");
    // So does JIT code.
    // SAFETY: as above.
    let r0 = unsafe { Interpreter::new().run_jit(&code, &mut env, 0) }.expect("runs");
    assert_eq!(r0, 15 + BIAS);
    assert_eq!(env.helper_calls, 1, "JIT code calls the native helper too");
}

#[test]
fn unknown_helpers_and_kfuncs_are_typed_errors() {
    let err = checked("call bpf_ktime_get_ns\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::UnknownHelper { pc: 0, id: 5 }),
        "{err}"
    );
    let err = checked("r0 = 0\ncall kernel-function#9\nexit").unwrap_err();
    assert!(
        matches!(
            err,
            VmError::UnknownKfunc {
                pc: 1,
                btf_id: 9,
                off: 0
            }
        ),
        "{err}"
    );
}

#[test]
fn kfuncs_go_through_the_environment() {
    let mut env = TestEnv::default();
    let src = "r1 = 4\nr5 = 2\ncall kernel-function#77\nexit";
    assert_eq!(both_env(&mut env, src), 4002);
}

#[test]
fn granted_map_values_are_usable_in_checked_mode() {
    let src = "
        r1 = map[id:5]
        r2 = 0
        call bpf_map_lookup_elem
        r1 = 42
        *(u64 *)(r0 +24) = r1
        r0 = *(u64 *)(r0 +8)
        exit
    ";
    let mut env = TestEnv {
        grant_values: true,
        value: [0, 9, 0, 0],
        ..TestEnv::default()
    };
    assert_eq!(checked_env(&mut env, src).expect("granted"), 9);
    assert_eq!(env.value[3], 42);
    // Without the grant the store traps: the value is not the program's.
    let mut env = TestEnv::default();
    let err = checked_env(&mut env, src).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::OutOfBounds {
                pc: 5,
                len: 8,
                write: true,
                ..
            }
        ),
        "{err}"
    );
    // Past the granted 32 bytes traps too.
    let mut env = TestEnv {
        grant_values: true,
        ..TestEnv::default()
    };
    let err = checked_env(&mut env, &src.replace("+24", "+28")).unwrap_err();
    assert!(matches!(err, VmError::OutOfBounds { pc: 5, .. }), "{err}");
}

#[test]
fn revoked_regions_are_gone() {
    let src = "
        r2 = 0
        call bpf_map_lookup_elem
        r6 = r0
        r1 = r0
        call bpf_ringbuf_submit#132
        r7 = r0
        r0 = *(u64 *)(r6 +0)
        exit
    ";
    let mut env = TestEnv {
        grant_values: true,
        ..TestEnv::default()
    };
    let err = checked_env(&mut env, src).unwrap_err();
    assert!(matches!(err, VmError::OutOfBounds { pc: 6, .. }), "{err}");
}

#[test]
fn helper_writes_initialize_the_stack_and_are_checked() {
    let src = "
        r1 = r10
        r1 += -16
        r2 = 16
        r3 = 0
        call bpf_probe_read_kernel
        r0 = *(u64 *)(r10 -16)
        exit
    ";
    let mut env = TestEnv::default();
    assert_eq!(both_env(&mut env, src), 0x5a5a_5a5a_5a5a_5a5a);
    // A helper asked to write past the frame gets an error from `Caller`.
    let err = checked_env(&mut env, &src.replace("-16\n", "-8\n")).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::OutOfBounds {
                pc: 4,
                len: 16,
                write: true,
                ..
            }
        ),
        "{err}"
    );
}

/// `bpf_loop(10, cb, &acc, 0)`; `cb` adds the index to `acc` and clobbers
/// r6 to r9, which the caller must not see.
const BPF_LOOP: &str = "
        r6 = 6
        r7 = 7
        *(u64 *)(r10 -8) = 0
        r1 = 10
        r2 = subprog[+11]
        r3 = r10
        r3 += -8
        r4 = 0
        call bpf_loop
        r0 += r6
        r0 += r7
        r1 = *(u64 *)(r10 -8)
        r0 += r1
        exit
    cb:
        r6 = 0
        r7 = 0
        r3 = *(u64 *)(r2 +0)
        r3 += r1
        *(u64 *)(r2 +0) = r3
        r0 = 0
        exit
";

#[test]
fn helpers_call_back_into_bpf() {
    let mut env = TestEnv::default();
    // 10 iterations + r6 + r7 + sum(0..10).
    assert_eq!(both_env(&mut env, BPF_LOOP), 10 + 6 + 7 + 45);
}

#[test]
fn callbacks_must_come_from_this_run() {
    let mut env = TestEnv::default();
    let src = "r1 = 3\nr2 = 0x1234 ll\nr3 = 0\nr4 = 0\ncall bpf_loop\nexit";
    let err = checked_env(&mut env, src).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::BadCallback {
                pc: 5,
                value: 0x1234
            }
        ),
        "{err}"
    );
}

#[test]
fn packet_loads_go_through_the_environment() {
    let mut env = TestEnv {
        packet: vec![0x11, 0x22, 0x33, 0x44, 0x55],
        ..TestEnv::default()
    };
    assert_eq!(
        both_env(&mut env, "r6 = r1\nr0 = *(u16 *)skb[1]\nexit"),
        0x2233
    );
    assert_eq!(
        both_env(&mut env, "r6 = r1\nr7 = 1\nr0 = *(u32 *)skb[r7 + 0]\nexit"),
        0x2233_4455
    );
    // Out of bounds: the program returns 0 at once.
    assert_eq!(
        both_env(&mut env, "r6 = r1\nr0 = *(u32 *)skb[2]\nr0 = 9\nexit"),
        0
    );
    let err = checked("r6 = r1\nr0 = *(u8 *)skb[0]\nexit").unwrap_err();
    assert!(matches!(err, VmError::Unsupported { pc: 1, .. }), "{err}");
}

#[test]
fn pseudo_ld_imm64_needs_the_environment() {
    let err = checked("r1 = map[id:5]\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::UnresolvedImm64 { pc: 0, src: 1 }),
        "{err}"
    );
    let mut env = TestEnv::default();
    assert_eq!(both_env(&mut env, "r0 = map[id:5]\nexit"), MAP);
    let base = env.value.as_ptr() as u64;
    assert_eq!(both_env(&mut env, "r0 = map[id:5][0]+16\nexit"), base + 16);
}

/// Counts its runs in `ctx[0]`, then tail-calls `index` of the array.
fn counting_program(index: u32) -> Code {
    code(&format!(
        "
        r2 = *(u64 *)(r1 +0)
        r2 += 1
        *(u64 *)(r1 +0) = r2
        r6 = r1
        r2 = map[id:5]
        r3 = {index}
        call bpf_tail_call
        r0 = *(u64 *)(r6 +0)
        exit
    "
    ))
}

/// Runs `code` checked, then on the JIT, and demands the same `r0`,
/// context and tail-call count.
fn run_with_ctx(env: &mut TestEnv, code: &Code, vm: &mut Interpreter) -> (u64, [u64; 8]) {
    let mut ctx = [0u64; 8];
    let r0 = vm
        .run_checked(code, env, Region::read_write_u64s(&mut ctx), &[])
        .expect("runs");
    let tail_calls = vm.tail_calls();
    let mut ctx2 = [0u64; 8];
    // SAFETY: the checked run showed the program stays in its stack and
    // the 64-byte context.
    let r0_jit = unsafe { vm.run(Engine::Jit, code, env, ctx2.as_mut_ptr() as u64) }.expect("runs");
    assert_eq!((r0, ctx), (r0_jit, ctx2), "the JIT disagrees");
    assert_eq!(
        vm.tail_calls(),
        tail_calls,
        "the JIT counts tail calls differently"
    );
    (r0, ctx)
}

#[test]
fn tail_calls_are_limited_to_33_per_run() {
    let prog = counting_program(0);
    let mut env = TestEnv {
        programs: vec![Some(prog.clone())],
        ..TestEnv::default()
    };
    let mut vm = Interpreter::new();
    let (r0, ctx) = run_with_ctx(&mut env, &prog, &mut vm);
    // The entry run plus 33 tail calls; the 34th falls through.
    assert_eq!(r0, u64::from(MAX_TAIL_CALL_CNT) + 1);
    assert_eq!(ctx[0], r0);
    assert_eq!(vm.tail_calls(), MAX_TAIL_CALL_CNT);
    // The same interpreter starts the next run with a fresh count.
    let (r0, _) = run_with_ctx(&mut env, &prog, &mut vm);
    assert_eq!(r0, u64::from(MAX_TAIL_CALL_CNT) + 1);
}

/// Tries `n` tail calls into `index` (which fail), then one into slot 0,
/// which returns 7; falls through to return 0 when that one fails too.
fn failing_then_real(n: u32, index: u32) -> Code {
    code(&format!(
        "
        r6 = r1
        r7 = {n}
    again:
        r1 = r6
        r2 = map[id:5]
        r3 = {index}
        call bpf_tail_call
        r7 -= 1
        if r7 != 0 goto again
        r1 = r6
        r2 = map[id:5]
        r3 = 0
        call bpf_tail_call
        r0 = 0
        exit
    "
    ))
}

#[test]
fn empty_slots_count_towards_the_limit_and_out_of_range_indices_do_not() {
    let seven = code("r0 = 7\nexit");
    let mut env = TestEnv {
        programs: vec![Some(seven), None],
        ..TestEnv::default()
    };
    let mut vm = Interpreter::new();
    // Empty slot 1: 32 attempts leave room for the real one, 33 do not.
    let (r0, _) = run_with_ctx(&mut env, &failing_then_real(32, 1), &mut vm);
    assert_eq!(r0, 7);
    let (r0, _) = run_with_ctx(&mut env, &failing_then_real(33, 1), &mut vm);
    assert_eq!(r0, 0);
    assert_eq!(vm.tail_calls(), MAX_TAIL_CALL_CNT);
    // Index 9 is past the array: never counted.
    let (r0, _) = run_with_ctx(&mut env, &failing_then_real(100, 9), &mut vm);
    assert_eq!(r0, 7);
    assert_eq!(vm.tail_calls(), 1);
}

#[test]
fn a_tail_call_from_a_subprogram_returns_to_its_caller() {
    let target = code("r6 = 0\nr0 = 7\nexit");
    let mut env = TestEnv {
        programs: vec![Some(target)],
        ..TestEnv::default()
    };
    let main = code(
        "
        r6 = 100
        call f
        r0 += r6
        exit
    f:
        r2 = map[id:5]
        r3 = 0
        call bpf_tail_call
        r0 = 1
        exit
    ",
    );
    let mut vm = Interpreter::new();
    let (r0, _) = run_with_ctx(&mut env, &main, &mut vm);
    assert_eq!(r0, 107);
}

#[test]
fn tail_calls_need_an_environment() {
    let err = checked("r3 = 0\ncall bpf_tail_call\nexit").unwrap_err();
    assert!(matches!(err, VmError::Unsupported { pc: 1, .. }), "{err}");
}

#[test]
fn the_tail_call_target_starts_with_a_fresh_frame() {
    // The target reads the slot the caller wrote: uninitialized for it.
    let target = code("r0 = *(u64 *)(r10 -8)\nexit");
    let mut env = TestEnv {
        programs: vec![Some(target)],
        ..TestEnv::default()
    };
    let main = code("*(u64 *)(r10 -8) = 5\nr2 = map[id:5]\nr3 = 0\ncall bpf_tail_call\nexit");
    // Unchecked engines see the fresh frame's zeroes.
    for engine in [Engine::Interp, Engine::Jit] {
        let mut ctx = [0u64; 1];
        // SAFETY: the target reads its own frame.
        let r0 =
            unsafe { Interpreter::new().run(engine, &main, &mut env, ctx.as_mut_ptr() as u64) };
        assert_eq!(r0.expect("runs"), 0, "{engine:?}");
    }
    let mut ctx = [0u64; 1];
    let err = Interpreter::new()
        .run_checked(&main, &mut env, Region::read_write_u64s(&mut ctx), &[])
        .unwrap_err();
    assert!(
        matches!(err, VmError::UninitializedRead { pc: 0, len: 8, .. }),
        "{err}"
    );
}

#[test]
fn no_env_refuses_everything() {
    let mut ctx = [0u8; 8];
    let err = Interpreter::new()
        .run_checked(
            &code("call bpf_map_lookup_elem\nexit"),
            &mut NoEnv,
            Region::read_write(&mut ctx),
            &[],
        )
        .unwrap_err();
    assert!(matches!(err, VmError::UnknownHelper { pc: 0, id: 1 }));
}
