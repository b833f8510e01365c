//! The typed messages: one [`Request`] per frame from the client, one [`Response`] back.

use serde::{Deserialize, Serialize};

/// A struct_ops registration to remove: by the map's id or its name in the object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A struct_ops map id, or the id of the link that registered it.
    Id(u32),
    /// The struct_ops map's name (the variable name in `SEC(".struct_ops")`).
    Name(String),
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Every program (`bpftool prog show`).
    ListProgs,
    /// Every map (`bpftool map show`).
    ListMaps,
    /// Every link (`bpftool link show`).
    ListLinks,
    /// The ops types the host registered.
    ListStructOpsTypes,
    /// Every struct_ops map with its state (`bpftool struct_ops show`).
    ListStructOps,
    /// `BPF_MAP_LOOKUP_ELEM` on map `id`.
    MapLookup {
        /// The map id.
        id: u32,
        /// The key bytes.
        key: Vec<u8>,
    },
    /// `BPF_MAP_UPDATE_ELEM` on map `id`.
    MapUpdate {
        /// The map id.
        id: u32,
        /// The key bytes.
        key: Vec<u8>,
        /// The value bytes (per-CPU maps: every CPU's value).
        value: Vec<u8>,
        /// `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`.
        flags: u64,
    },
    /// `BPF_MAP_DELETE_ELEM` on map `id`.
    MapDelete {
        /// The map id.
        id: u32,
        /// The key bytes.
        key: Vec<u8>,
    },
    /// Every key and value of map `id` (`bpftool map dump`).
    MapDump {
        /// The map id.
        id: u32,
    },
    /// Loads an object and attaches its struct_ops maps (`bpftool struct_ops register`).
    StructOpsRegister {
        /// The `.bpf.o` bytes.
        object: Vec<u8>,
        /// The object's path, for names and messages.
        path: String,
        /// Only this struct_ops map; `None`: every struct_ops map of the object.
        map: Option<String>,
    },
    /// Removes a struct_ops registration (`bpftool struct_ops unregister`).
    StructOpsUnregister {
        /// Which one.
        target: Target,
    },
    /// Moves link `link_id` to a struct_ops map of a new object (`bpf_link__update_map`).
    LinkUpdate {
        /// The link id.
        link_id: u32,
        /// The `.bpf.o` bytes.
        object: Vec<u8>,
        /// The object's path, for names and messages.
        path: String,
        /// The struct_ops map; `None` when the object has exactly one.
        map: Option<String>,
    },
    /// `BPF_LINK_DETACH` (`bpftool link detach`).
    LinkDetach {
        /// The link id.
        link_id: u32,
    },
    /// The host's own status, as JSON (the embedder's status hook).
    Status,
    /// Program `id`'s translated instructions (`bpftool prog dump xlated`).
    ProgXlated {
        /// The program id.
        id: u32,
    },
    /// Program `id`'s native code (`bpftool prog dump jited`).
    ProgJited {
        /// The program id.
        id: u32,
    },
    /// Every BTF object (`bpftool btf show`).
    ListBtf,
    /// BTF object `id`'s raw bytes (`bpftool btf dump id N`).
    BtfGet {
        /// The BTF object id.
        id: u32,
    },
    /// `BPF_PROG_TEST_RUN` of program `id` in the host (`bpftool prog run`).
    ProgRun {
        /// The program id.
        id: u32,
        /// A struct_ops program's arguments (the context as `u64` words).
        args: Vec<u64>,
        /// The packet, for XDP and skb programs.
        data_in: Option<Vec<u8>>,
        /// The context (`struct xdp_md`, `struct __sk_buff`).
        ctx_in: Option<Vec<u8>>,
        /// Runs (0 runs once); at most [`MAX_REMOTE_REPEAT`].
        repeat: u32,
    },
}

/// The most runs one [`Request::ProgRun`] may ask for: a test run holds its connection's
/// thread, so a remote caller cannot keep the host busy for long.
pub const MAX_REMOTE_REPEAT: u32 = 1 << 20;

impl Request {
    /// Does the request change the runtime (needs the read-write role)?
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::MapUpdate { .. }
                | Request::MapDelete { .. }
                | Request::StructOpsRegister { .. }
                | Request::StructOpsUnregister { .. }
                | Request::LinkUpdate { .. }
                | Request::LinkDetach { .. }
                | Request::ProgRun { .. }
        )
    }
}

/// The step a request failed at, so a client can say where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Reading the frame (garbled, truncated, oversized, wrong version).
    Frame,
    /// Decoding the payload.
    Decode,
    /// The peer's credentials or role.
    Access,
    /// The server's connection limit.
    Accept,
    /// Walking object ids (`get_next_id`, `get_fd_by_id`).
    Lookup,
    /// A map command.
    Map,
    /// Opening the ELF object.
    Open,
    /// Loading (relocating, verifying, JITing) the object.
    Load,
    /// Registering a struct_ops map (update or link creation).
    Attach,
    /// `link_update`.
    LinkUpdate,
    /// `link_detach`.
    LinkDetach,
    /// Reading a program's instructions or code.
    Prog,
    /// Reading a BTF object.
    Btf,
    /// A program's test run.
    Run,
    /// Removing a registration.
    Unregister,
    /// The host's status hook.
    Status,
    /// The server itself (a caught panic; the host keeps running).
    Internal,
}

/// A refused or failed request: the Linux errno, the step and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{step:?}: {} ({message})", errno_name(*.errno))]
pub struct ControlError {
    /// The Linux errno (positive).
    pub errno: i32,
    /// Where it failed.
    pub step: Step,
    /// A human-readable detail.
    pub message: String,
}

fn errno_name(errno: i32) -> String {
    structops::Errno(errno)
        .name()
        .map_or_else(|| format!("errno {errno}"), str::to_string)
}

impl ControlError {
    /// An error from an errno.
    pub fn new(errno: structops::Errno, step: Step, message: impl Into<String>) -> ControlError {
        ControlError {
            errno: errno.0,
            step,
            message: message.into(),
        }
    }

    /// The errno as the runtime's type.
    pub fn errno(&self) -> structops::Errno {
        structops::Errno(self.errno)
    }
}

/// A program (`struct bpf_prog_info`'s fields that `bpftool prog show` prints).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgEntry {
    /// `id`.
    pub id: u32,
    /// `type` (`BPF_PROG_TYPE_*`).
    pub prog_type: u32,
    /// `name`.
    pub name: String,
    /// `tag`.
    pub tag: [u8; 8],
    /// `gpl_compatible`.
    pub gpl_compatible: bool,
    /// `load_time` (`CLOCK_BOOTTIME` ns).
    pub load_time: u64,
    /// `xlated_prog_len`.
    pub xlated_len: u32,
    /// `jited_prog_len`.
    pub jited_len: u32,
    /// `map_ids`.
    pub map_ids: Vec<u32>,
    /// `btf_id`.
    pub btf_id: u32,
}

/// A map (`struct bpf_map_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapEntry {
    /// `id`.
    pub id: u32,
    /// `type` (`BPF_MAP_TYPE_*`).
    pub map_type: u32,
    /// `name`.
    pub name: String,
    /// `key_size`.
    pub key_size: u32,
    /// `value_size`.
    pub value_size: u32,
    /// The value size a lookup exchanges (per-CPU maps: every CPU's value).
    pub sys_value_size: u32,
    /// `max_entries`.
    pub max_entries: u32,
    /// `map_flags`.
    pub map_flags: u32,
    /// `btf_id`.
    pub btf_id: u32,
    /// `btf_key_type_id`.
    pub btf_key_type_id: u32,
    /// `btf_value_type_id`.
    pub btf_value_type_id: u32,
    /// `btf_vmlinux_value_type_id`.
    pub btf_vmlinux_value_type_id: u32,
}

/// A link (`struct bpf_link_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// `id`.
    pub id: u32,
    /// `type` (`BPF_LINK_TYPE_*`).
    pub link_type: u32,
    /// `prog_id`.
    pub prog_id: u32,
    /// `struct_ops.map_id` (0 once detached).
    pub map_id: u32,
}

/// An ops type the host registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsTypeEntry {
    /// The struct's name (`tcp_congestion_ops`).
    pub name: String,
    /// Bytes of the ops table.
    pub size: u32,
    /// Bytes of the `bpf_struct_ops_<name>` value.
    pub value_size: u32,
    /// The members' names, in order.
    pub members: Vec<String>,
}

/// A struct_ops map (`bpftool struct_ops show`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructOpsEntry {
    /// The map id.
    pub map_id: u32,
    /// The map name.
    pub name: String,
    /// The ops type's name.
    pub ops_type: String,
    /// `BPF_STRUCT_OPS_STATE_*` (0 init, 1 inuse, 2 tobefree, 3 ready).
    pub state: u32,
    /// Created with `BPF_F_LINK`.
    pub link_map: bool,
    /// The value as the kernel's `seq_show` prints it.
    pub value: String,
}

/// A struct_ops map registered through the socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The map name.
    pub name: String,
    /// The map id.
    pub map_id: u32,
    /// The link id, for a `.struct_ops.link` map.
    pub link_id: Option<u32>,
}

/// A BTF object (`struct bpf_btf_info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtfEntry {
    /// `id`.
    pub id: u32,
    /// `name`: `vmlinux` for the host BTF, empty for BTF loaded with an object.
    pub name: String,
    /// `btf_size`.
    pub size: u32,
    /// `kernel_btf`: the host BTF.
    pub kernel: bool,
}

/// A program's translated instructions, as `bpf_prog_info.xlated_prog_insns` gives them
/// (map loads show the map's id), with what a disassembler needs to name things.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XlatedProg {
    /// The program's name.
    pub name: String,
    /// The program's tag.
    pub tag: [u8; 8],
    /// Each instruction's 8 bytes, in the host's byte order.
    pub insns: Vec<[u8; 8]>,
    /// The name of each kfunc called, by its BTF id in the host BTF.
    pub kfuncs: Vec<(u32, String)>,
}

/// A program's native code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JitedProg {
    /// The program's name.
    pub name: String,
    /// The program's tag.
    pub tag: [u8; 8],
    /// The code of every function, their constants included.
    pub code: Vec<u8>,
    /// `(first BPF instruction, offset in code, size)` per function, the entry first.
    pub functions: Vec<(u32, u32, u32)>,
}

/// What a test run gave back (`struct bpf_attr`'s test fields after the command).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutput {
    /// `retval`.
    pub retval: u32,
    /// `duration`: mean ns per run.
    pub duration_ns: u32,
    /// The output packet, for program types that have one.
    pub data_out: Option<Vec<u8>>,
    /// The output context, when one was given.
    pub ctx_out: Option<Vec<u8>>,
}

/// A map's (key, value) pairs, as [`Response::Entries`] carries them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The request failed (or was refused).
    Error(ControlError),
    /// Programs.
    Progs(Vec<ProgEntry>),
    /// Maps.
    Maps(Vec<MapEntry>),
    /// Links.
    Links(Vec<LinkEntry>),
    /// Ops types.
    StructOpsTypes(Vec<OpsTypeEntry>),
    /// Struct_ops maps.
    StructOps(Vec<StructOpsEntry>),
    /// A looked-up value.
    Value(Vec<u8>),
    /// A map's (key, value) pairs in `get_next_key` order.
    Entries(Entries),
    /// The maps a registration attached.
    Registered(Vec<Registered>),
    /// The request succeeded and has nothing to return.
    Done,
    /// The host status: JSON text (postcard cannot carry a self-describing
    /// `serde_json::Value`, so the JSON travels as a string).
    Status(String),
    /// A program's translated instructions.
    Xlated(XlatedProg),
    /// A program's native code.
    Jited(JitedProg),
    /// BTF objects.
    Btfs(Vec<BtfEntry>),
    /// Raw BTF.
    Btf(Vec<u8>),
    /// A test run's results.
    Ran(RunOutput),
}
