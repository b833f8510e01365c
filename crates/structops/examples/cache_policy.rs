//! A cache whose eviction policy is a BPF program: the worked example of
//! `docs/HOSTS.md`, which shows this file in full.
//!
//! `cargo run -p structops --example cache_policy` runs it;
//! `... --example cache_policy -- --btf FILE` writes the host BTF to FILE instead.

use std::error::Error;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use structops::loader::{LoadError, LoadOptions, LoadedObject, ObjectLoader};
use structops::struct_ops::{MemberInfo, add_value_type};
use structops::{
    Engine, Errno, Link, OpsSlot, OpsStruct, OpsTable, Runtime, RuntimeConfig, StructOps,
    StructOpsDesc,
};
use structops_btf::host::{BtfTypes, CChar};
use structops_btf_derive::Btf;

/// How many entries the cache holds (`CACHE_SLOTS` on the BPF side).
pub const CACHE_SLOTS: usize = 8;
/// The `slot` of an entry that has none yet (what `admit` sees).
pub const NO_SLOT: u32 = u32::MAX;

/// `struct cache_entry`: one cached object as policies see it. Read-only to them.
#[derive(Btf, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
#[btf(name = "cache_entry")]
pub struct CacheEntry {
    /// The key.
    pub key: u64,
    /// Hits since the entry was inserted (0 on insertion).
    pub hits: u64,
    /// Size in bytes.
    pub size: u32,
    /// Where the cache keeps it: `0..CACHE_SLOTS`, or `NO_SLOT`.
    pub slot: u32,
}

/// `struct cache_ctx`: what `evict` is told. Read-only to policies.
#[derive(Btf, Clone, Copy, Debug, Default)]
#[repr(C)]
#[btf(name = "cache_ctx")]
pub struct CacheCtx {
    /// Requests served so far.
    pub requests: u64,
    /// Slots in the cache.
    pub capacity: u32,
    /// Slots in use (all of them when `evict` runs).
    pub used: u32,
}

/// `struct cache_ops`: the ops type. This one Rust type gives both the BTF that
/// programs are verified against and the host's view of a registered table.
#[derive(Btf)]
#[repr(C)]
#[btf(name = "cache_ops")]
pub struct CacheOps {
    /// May `e` enter the cache? 0 admits it, a negative errno refuses it.
    pub admit: Option<unsafe extern "C" fn(e: *mut CacheEntry) -> i32>,
    /// `e` was just inserted (`hits == 0`) or hit.
    pub access: Option<unsafe extern "C" fn(e: *mut CacheEntry)>,
    /// The cache is full: which slot should be freed?
    pub evict: Option<unsafe extern "C" fn(ctx: *mut CacheCtx) -> u32>,
    /// The policy's name, a C string.
    pub name: [CChar; 16],
}

// SAFETY: the host BTF's `cache_ops` is derived from this type, so the layouts are
// the same, and each function pointer has its member's C signature.
unsafe impl OpsStruct for CacheOps {
    const NAME: &'static str = "cache_ops";
}

/// The host BTF: `cache_ops`, the structs its members point to, and the value type
/// `bpf_struct_ops_cache_ops` that struct_ops maps of this type hold.
pub fn host_btf() -> structops_btf::Btf {
    let mut types = BtfTypes::new();
    let ops = types.id_of::<CacheOps>();
    let mut b = types.into_builder();
    // `ops` is a struct of `b`, so this cannot fail.
    let _ = add_value_type(&mut b, ops, "cache_ops");
    b.build()
}

/// The host side of `cache_ops`: the registered policy, for the control path
/// (`reg`, `unreg`, `update`) and for the call path (`current`).
#[derive(Default)]
pub struct PolicyHost {
    registered: Mutex<Option<Arc<OpsTable>>>,
    current: OpsSlot,
}

impl PolicyHost {
    fn registered(&self) -> MutexGuard<'_, Option<Arc<OpsTable>>> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_registered(&self, table: &Arc<OpsTable>) -> bool {
        self.registered()
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, table))
    }
}

impl StructOps for PolicyHost {
    /// `name` is the only data member: it must be a non-empty C string.
    fn init_member(
        &self,
        member: &MemberInfo,
        kdata: &mut [u8],
        udata: &[u8],
    ) -> Result<bool, Errno> {
        if member.name != "name" {
            return Ok(false);
        }
        let range = member.offset as usize..(member.offset + member.size) as usize;
        let (Some(src), Some(dst)) = (udata.get(range.clone()), kdata.get_mut(range)) else {
            return Err(Errno::EINVAL);
        };
        if src.first() == Some(&0) || !src.contains(&0) {
            return Err(Errno::EINVAL);
        }
        dst.copy_from_slice(src);
        Ok(true)
    }

    /// A policy must implement `evict`; `admit` and `access` are optional.
    fn validate(&self, table: &OpsTable) -> Result<(), Errno> {
        match table.member_by_name("evict") {
            Some(_) => Ok(()),
            None => Err(Errno::EINVAL),
        }
    }

    /// One policy at a time.
    fn reg(&self, table: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        let mut registered = self.registered();
        if registered.is_some() {
            return Err(Errno::EBUSY);
        }
        *registered = Some(table.clone());
        self.current.store(Some(table.clone()));
        Ok(())
    }

    fn unreg(&self, table: &Arc<OpsTable>, _: Option<&Link>) {
        if self.is_registered(table) {
            *self.registered() = None;
            self.current.clear_if(table);
        }
    }

    fn has_update(&self) -> bool {
        true
    }

    /// Hot swap: `new` replaces `old`, which must be the registered policy.
    fn update(&self, new: &Arc<OpsTable>, old: &Arc<OpsTable>, _: &Link) -> Result<(), Errno> {
        if !self.is_registered(old) {
            return Err(Errno::EINVAL);
        }
        *self.registered() = Some(new.clone());
        self.current.replace(old, new.clone());
        Ok(())
    }

    /// Policies read entries and the context; they write neither.
    fn struct_write(
        &self,
        btf: &structops_btf::Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), String>> {
        let name = btf.ty(btf_id).and_then(|t| btf.name(t.name_off));
        let name = name.unwrap_or("this struct");
        Some(Err(format!(
            "cache policies may not write {name} (off {off}, size {size})"
        )))
    }
}

/// What the cache did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The key was cached in `slot`.
    Hit {
        /// Where.
        slot: u32,
    },
    /// The key was inserted into `slot`, replacing the key `evicted`.
    Inserted {
        /// Where.
        slot: u32,
        /// The key the policy chose to evict, if the cache was full.
        evicted: Option<u64>,
    },
    /// `admit` refused the key with `-errno`.
    Refused {
        /// The errno.
        errno: i32,
    },
}

/// Why the cache could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No policy is registered.
    #[error("no cache policy is registered")]
    NoPolicy,
    /// The policy's `evict` named a slot the cache does not have.
    #[error("policy {policy}: evict chose slot {slot}, the cache has {CACHE_SLOTS}")]
    BadVictim {
        /// The policy's name.
        policy: String,
        /// What `evict` returned.
        slot: u32,
    },
}

/// A cache of `CACHE_SLOTS` entries whose eviction policy is a `cache_ops` table.
pub struct Cache {
    rt: Runtime,
    policy: Arc<PolicyHost>,
    slots: [Option<CacheEntry>; CACHE_SLOTS],
    requests: u64,
}

impl Cache {
    /// An empty cache with its own runtime (programs run on `engine`), its host BTF
    /// and the `cache_ops` type registered.
    pub fn new(engine: Engine) -> Result<Cache, Errno> {
        let rt = Runtime::new(RuntimeConfig {
            engine,
            ..RuntimeConfig::default()
        });
        rt.register_host_btf(host_btf())?;
        let policy = Arc::new(PolicyHost::default());
        rt.register_struct_ops(StructOpsDesc::new("cache_ops", policy.clone()))?;
        Ok(Cache {
            rt,
            policy,
            slots: [None; CACHE_SLOTS],
            requests: 0,
        })
    }

    /// The runtime, for loading and attaching policies.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The registered policy's name.
    pub fn policy_name(&self) -> Option<String> {
        let guard = structops::read_lock();
        let ops = self.policy.current.load(&guard)?.ops::<CacheOps>()?;
        Some(name_of(ops))
    }
}

impl Cache {
    /// Looks `key` up, inserting it (`size` bytes) on a miss as the policy decides.
    pub fn get(&mut self, key: u64, size: u32) -> Result<Outcome, CacheError> {
        self.requests += 1;
        // The table stays alive, even across a hot swap, while `guard` lives.
        let guard = structops::read_lock();
        let table = self.policy.current.load(&guard);
        let ops = table
            .and_then(|t| t.ops::<CacheOps>())
            .ok_or(CacheError::NoPolicy)?;
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if let Some(e) = entry
                && e.key == key
            {
                e.hits += 1;
                if let Some(access) = ops.access {
                    // SAFETY: `e` is a valid `cache_entry` for the call.
                    unsafe { access(e) };
                }
                return Ok(Outcome::Hit { slot: slot as u32 });
            }
        }
        let mut new = CacheEntry {
            key,
            hits: 0,
            size,
            slot: NO_SLOT,
        };
        if let Some(admit) = ops.admit {
            // SAFETY: as above.
            let verdict = unsafe { admit(&mut new) };
            if verdict < 0 {
                return Ok(Outcome::Refused { errno: -verdict });
            }
        }
        let (slot, evicted) = match self.slots.iter().position(Option::is_none) {
            Some(free) => (free, None),
            None => {
                let mut ctx = CacheCtx {
                    requests: self.requests,
                    capacity: CACHE_SLOTS as u32,
                    used: CACHE_SLOTS as u32,
                };
                // `validate` refused tables without `evict`.
                let evict = ops.evict.ok_or(CacheError::NoPolicy)?;
                // SAFETY: `ctx` is a valid `cache_ctx` for the call.
                let victim = unsafe { evict(&mut ctx) };
                // What a program returns is input like any other: check it.
                let Some(Some(old)) = self.slots.get(victim as usize) else {
                    return Err(CacheError::BadVictim {
                        policy: name_of(ops),
                        slot: victim,
                    });
                };
                (victim as usize, Some(old.key))
            }
        };
        new.slot = slot as u32;
        let entry = self.slots.get_mut(slot).map(|s| s.insert(new));
        if let (Some(e), Some(access)) = (entry, ops.access) {
            // SAFETY: as above.
            unsafe { access(e) };
        }
        Ok(Outcome::Inserted {
            slot: slot as u32,
            evicted,
        })
    }
}

/// The `name` of a table.
fn name_of(ops: &CacheOps) -> String {
    let bytes: Vec<u8> = ops
        .name
        .iter()
        .map(|c| c.0)
        .take_while(|&c| c != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The policies of `bpf/cache_policy.bpf.c` (built by `make -C bpf`).
pub const POLICIES: &[u8] = include_bytes!("../../../bpf/cache_policy.bpf.o");
/// A policy that breaks the host's rules (`bpf/cache_policy_bad.bpf.c`).
pub const BAD_POLICY: &[u8] = include_bytes!("../../../bpf/cache_policy_bad.bpf.o");

/// Opens `bytes` (named `path` in errors) and loads it into the cache's runtime,
/// keeping the verifier logs.
pub fn load(cache: &Cache, bytes: &[u8], path: &str) -> Result<LoadedObject, LoadError> {
    let opts = LoadOptions {
        keep_logs: true,
        log_level: 1,
        ..LoadOptions::default()
    };
    ObjectLoader::open(bytes, path)?.load(cache.runtime(), &opts)
}

/// Serves `requests` (key, size), printing what the cache did.
fn serve(cache: &mut Cache, requests: &[(u64, u32)]) -> Result<(), CacheError> {
    for &(key, size) in requests {
        let outcome = cache.get(key, size)?;
        let policy = cache.policy_name().unwrap_or_default();
        println!("{policy:>4}: get {key:>2} -> {outcome:?}");
    }
    Ok(())
}

/// Runs the example: LRU, a hot swap to FIFO, and a policy that does not load.
pub fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--btf") {
        let path = args.next().ok_or("usage: cache_policy --btf FILE")?;
        std::fs::write(path, host_btf().encode())?;
        return Ok(());
    }
    let mut cache = Cache::new(Engine::default())?;
    let obj = load(&cache, POLICIES, "cache_policy.bpf.o")?;
    let link = obj.attach_struct_ops(cache.runtime(), "lru")?;
    // Fill the cache (the 1 MiB key 9 is refused), hit 2, then overflow it.
    let fill: Vec<(u64, u32)> = (1..=8).map(|key| (key, 64)).collect();
    serve(&mut cache, &[(1, 64), (9, 1 << 20)])?;
    serve(&mut cache, &fill)?;
    serve(&mut cache, &[(2, 64), (10, 64)])?;
    // Hot swap: the same cache, with FIFO from now on. A hit no longer renews.
    link.update_map(cache.runtime(), &obj, "fifo")?;
    serve(&mut cache, &[(3, 64), (11, 64), (12, 64)])?;
    match load(&cache, BAD_POLICY, "cache_policy_bad.bpf.o") {
        Err(LoadError::ProgLoad {
            prog, errno, log, ..
        }) => println!("{prog}: {errno}\n{log}"),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err("the bad policy loaded".into()),
    }
    link.detach(cache.runtime())?;
    Ok(())
}
