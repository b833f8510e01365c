//! Clang-compiled BPF ELF objects to an [`Object`], with libbpf's rules, and relocation as
//! pure transforms.
//!
//! [`Object::parse`] reads an object the way libbpf 1.5's `bpf_object__open` does:
//! programs split by function symbols and typed by their `SEC()` names, BTF-defined maps,
//! internal maps for global data and `.kconfig`, externs, struct_ops maps with their
//! member → program bindings, and every relocation record classified. Nothing here
//! touches a kernel or a runtime: the load-time steps take the host's facts as
//! arguments, in libbpf's order:
//!
//! 1. [`Object::resolve_externs`]: kconfig values and `__ksym` resolution
//!    ([`ExternHost`], [`KsymResolver`]);
//! 2. [`Object::init_struct_ops`]: bind struct_ops maps to the kernel's ops types in a
//!    target BTF (member matching by name, `attach_btf_id`, `expected_attach_type`,
//!    the kernel-side value bytes);
//! 3. [`Object::relocate_core`]: CO-RE against a target BTF;
//! 4. [`Object::relocate`]: subprograms appended and calls fixed up, map, global data,
//!    extern and kfunc references patched with caller-supplied map handles: the final
//!    instructions libbpf would submit.
//!
//! ```
//! use structops_obj::{Object, ParseOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/minimal.bpf.o"))?;
//! let mut obj = Object::parse_with(&bytes, &ParseOptions::for_path("minimal.bpf.o"))?;
//! let prog = obj.program("count").expect("program");
//! assert_eq!(prog.section_name(), "tp/syscalls/sys_enter_getpid");
//! assert_eq!(obj.maps()[0].name(), "counts");
//!
//! // Map references become BPF_PSEUDO_MAP_FD loads of whatever handle the caller
//! // gives each map; here simply its index + 100.
//! let linked = obj.relocate(&|map| 100 + map as i32)?;
//! let insns = &linked[0].insns;
//! assert!(insns.iter().any(|i| i.code == 0x18 && i.src_reg() == 1 && i.imm == 100));
//! # Ok(())
//! # }
//! ```

pub mod core_relo;
mod elf;
pub mod error;
pub mod externs;
pub mod maps;
mod object;
pub mod program;
pub mod relocate;
pub mod section;
pub mod struct_ops;
pub mod types;

pub use error::{
    CoreError, ElfError, Error, ExternError, MapError, ProgramError, RelocError, StructOpsError,
};
pub use externs::{BtfKsyms, Extern, ExternHost, ExternKind, KsymResolver, KsymTarget, NoKsyms};
pub use maps::{Map, MapKind, Slot};
pub use object::{MAX_ZEROED_MAP_SIZE, Object, ParseOptions};
pub use program::{Program, RelocKind, Relocation};
pub use relocate::{CoreEngine, CoreResolver, LinkedProgram, LoadHost};
pub use struct_ops::{KernStructOps, StructOps};
pub use types::{AttachType, MapType, ProgType};
