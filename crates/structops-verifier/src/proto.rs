//! Helper and kfunc prototypes: the verifier's `struct bpf_func_proto`.
//!
//! The runtime answers "which helper is id N for this program" through
//! [`VerifierEnv::helper`](crate::VerifierEnv::helper) with a [`HelperProto`];
//! the verifier checks each call's arguments against it (`check_func_arg`)
//! and types `r0` from its [`Ret`] (`check_helper_call`).

use std::fmt;

/// The base of an argument type (`enum bpf_arg_type` without its flag bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgType {
    /// `ARG_DONTCARE`: the argument is unused.
    DontCare,
    /// `ARG_CONST_MAP_PTR`: a map reference (`LD_IMM64` of a map).
    ConstMapPtr,
    /// `ARG_PTR_TO_MAP_KEY`: `key_size` readable bytes.
    PtrToMapKey,
    /// `ARG_PTR_TO_MAP_VALUE`: `value_size` readable bytes.
    PtrToMapValue,
    /// `ARG_PTR_TO_MEM`: memory whose size is the next argument.
    PtrToMem,
    /// `ARG_CONST_SIZE`: the size of the previous memory argument, not zero.
    ConstSize,
    /// `ARG_CONST_SIZE_OR_ZERO`: the size of the previous memory argument.
    ConstSizeOrZero,
    /// `ARG_PTR_TO_CTX`: the program's context.
    PtrToCtx,
    /// `ARG_ANYTHING`: any initialized value.
    Anything,
    /// `ARG_SCALAR`: a scalar.
    Scalar,
    /// `ARG_PTR_TO_SPIN_LOCK`: a `struct bpf_spin_lock` in a map value.
    PtrToSpinLock,
    /// `ARG_PTR_TO_BTF_ID`: a typed pointer to a host struct.
    PtrToBtfId,
    /// `ARG_PTR_TO_RINGBUF_MEM`: a ring buffer reservation.
    PtrToRingbufMem,
    /// `ARG_CONST_ALLOC_SIZE_OR_ZERO`: the size of memory the helper allocates.
    ConstAllocSizeOrZero,
    /// `ARG_PTR_TO_FUNC`: a callback (`LD_IMM64` with `BPF_PSEUDO_FUNC`).
    PtrToFunc,
    /// `ARG_PTR_TO_STACK`: a pointer into the program's stack.
    PtrToStack,
    /// `ARG_PTR_TO_CONST_STR`: a NUL-terminated string in a read-only map value.
    PtrToConstStr,
    /// `ARG_PTR_TO_SOCK_COMMON`: any socket pointer (`sock_common`, `sock`,
    /// `tcp_sock`, `xdp_sock`).
    PtrToSockCommon,
    /// `ARG_PTR_TO_SOCKET`: a full socket (`PTR_TO_SOCKET`).
    PtrToSocket,
    /// `ARG_PTR_TO_BTF_ID_SOCK_COMMON`: a socket pointer, or a typed pointer
    /// to a struct that starts with `struct sock_common`.
    PtrToBtfIdSockCommon,
}

/// The flag bits of argument and return types (`enum bpf_type_flag`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TypeFlags(u32);

impl TypeFlags {
    /// No flags.
    pub const NONE: TypeFlags = TypeFlags(0);
    /// `PTR_MAYBE_NULL`: NULL is allowed (arguments) or possible (return values).
    pub const PTR_MAYBE_NULL: TypeFlags = TypeFlags(1 << 0);
    /// `MEM_RDONLY`: the helper only reads the memory.
    pub const MEM_RDONLY: TypeFlags = TypeFlags(1 << 1);
    /// `MEM_RINGBUF`: ring buffer memory.
    pub const MEM_RINGBUF: TypeFlags = TypeFlags(1 << 2);
    /// `OBJ_RELEASE`: the helper releases the reference it is passed.
    pub const OBJ_RELEASE: TypeFlags = TypeFlags(1 << 5);
    /// `MEM_UNINIT`: the memory need not be initialized (the helper writes it).
    pub const MEM_UNINIT: TypeFlags = TypeFlags(1 << 7);
    /// `MEM_FIXED_SIZE`: the size is known from the prototype.
    pub const MEM_FIXED_SIZE: TypeFlags = TypeFlags(1 << 10);
    /// `MEM_WRITE`: the helper writes the memory.
    pub const MEM_WRITE: TypeFlags = TypeFlags(1 << 19);

    /// Does this set contain every flag of `other`?
    pub const fn contains(self, other: TypeFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    pub const fn union(self, other: TypeFlags) -> TypeFlags {
        TypeFlags(self.0 | other.0)
    }

    /// The raw bits (the kernel's values shifted down by `BPF_BASE_TYPE_BITS`).
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for TypeFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::PTR_MAYBE_NULL, "PTR_MAYBE_NULL"),
            (Self::MEM_RDONLY, "MEM_RDONLY"),
            (Self::MEM_RINGBUF, "MEM_RINGBUF"),
            (Self::OBJ_RELEASE, "OBJ_RELEASE"),
            (Self::MEM_UNINIT, "MEM_UNINIT"),
            (Self::MEM_FIXED_SIZE, "MEM_FIXED_SIZE"),
            (Self::MEM_WRITE, "MEM_WRITE"),
        ];
        let mut set = f.debug_set();
        for (flag, name) in names {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// One argument of a helper: its base type and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arg {
    /// The base type.
    pub ty: ArgType,
    /// The flags.
    pub flags: TypeFlags,
}

impl Arg {
    /// An argument of `ty` without flags.
    pub const fn new(ty: ArgType) -> Arg {
        Arg {
            ty,
            flags: TypeFlags::NONE,
        }
    }

    /// An argument of `ty` with `flags`.
    pub const fn with(ty: ArgType, flags: TypeFlags) -> Arg {
        Arg { ty, flags }
    }

    /// `ARG_DONTCARE`.
    pub const DONTCARE: Arg = Arg::new(ArgType::DontCare);
}

/// The base of a return type (`enum bpf_return_type` without its flag bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetType {
    /// `RET_INTEGER`.
    Integer,
    /// `RET_VOID`.
    Void,
    /// `RET_PTR_TO_MAP_VALUE`: a value of the map in the first argument.
    PtrToMapValue,
    /// `RET_PTR_TO_MEM`: memory of the size the allocation argument gave.
    PtrToMem,
    /// `RET_PTR_TO_BTF_ID`: a typed pointer to a host struct.
    PtrToBtfId,
    /// `RET_PTR_TO_SOCKET`: a full socket.
    PtrToSocket,
    /// `RET_PTR_TO_SOCK_COMMON`: a socket, maybe not a full one.
    PtrToSockCommon,
    /// `RET_PTR_TO_TCP_SOCK`: a TCP socket.
    PtrToTcpSock,
}

/// A helper's return type and flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ret {
    /// The base type.
    pub ty: RetType,
    /// The flags (`PTR_MAYBE_NULL`, `MEM_RINGBUF`).
    pub flags: TypeFlags,
}

impl Ret {
    /// `RET_INTEGER`.
    pub const INTEGER: Ret = Ret {
        ty: RetType::Integer,
        flags: TypeFlags::NONE,
    };
    /// `RET_VOID`.
    pub const VOID: Ret = Ret {
        ty: RetType::Void,
        flags: TypeFlags::NONE,
    };
}

/// A helper's prototype: the runtime's `struct bpf_func_proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HelperProto {
    /// The helper id (`BPF_FUNC_*`, the call's `imm`).
    pub id: i32,
    /// The helper's name without the `bpf_` prefix (as in `enum bpf_func_id`).
    pub name: &'static str,
    /// What it returns.
    pub ret: Ret,
    /// Its five arguments (`r1` to `r5`), `ARG_DONTCARE` for unused ones.
    pub args: [Arg; 5],
    /// Only programs with a GPL-compatible license may call it.
    pub gpl_only: bool,
    /// It may sleep: only sleepable programs may call it.
    pub might_sleep: bool,
    /// It accepts packet pointers for its memory arguments.
    pub pkt_access: bool,
}
