//! `docs/HOSTS.md`, the worked example of a new ops type, is what the test suite builds
//! and runs:
//!
//! - the document's code blocks tagged `file=PATH`, joined by one empty line, are the
//!   committed files verbatim (the example, the BPF C, the generated header);
//! - the committed header is what the host BTF dumps to, and the committed objects are
//!   what clang-19 makes of the C (when clang and the headers are here);
//! - the example (`examples/cache_policy.rs`, compiled into this test) runs end to end
//!   on the interpreter and on the JIT, and its BPF policies decide exactly what a
//!   reference LRU/FIFO written in Rust decides, across hot swaps; the bad policy is
//!   refused with the host's message.

#[path = "../examples/cache_policy.rs"]
mod cache_policy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cache_policy::{CACHE_SLOTS, Cache, CacheError, Outcome};
use structops::loader::LoadError;
use structops::{Engine, Errno};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The blocks of `markdown` tagged `file=PATH` (in the fence's info string), per
/// path, in order.
fn tagged_blocks(markdown: &str) -> BTreeMap<String, Vec<String>> {
    let mut blocks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut open: Option<(Option<String>, String)> = None;
    for line in markdown.split_inclusive('\n') {
        let fence = line.trim_end();
        if let Some((file, body)) = &mut open {
            if fence == "```" {
                if let Some(file) = file.take() {
                    blocks.entry(file).or_default().push(std::mem::take(body));
                }
                open = None;
            } else {
                body.push_str(line);
            }
        } else if fence.starts_with("```") {
            let file = fence
                .split_whitespace()
                .find_map(|w| w.strip_prefix("file="))
                .map(str::to_string);
            open = Some((file, String::new()));
        }
    }
    assert!(open.is_none(), "HOSTS.md has an unclosed code block");
    blocks
}

#[test]
fn the_document_shows_the_committed_files_verbatim() {
    let doc = read("docs/HOSTS.md");
    let blocks = tagged_blocks(&doc);
    let shown: Vec<&str> = blocks.keys().map(String::as_str).collect();
    assert_eq!(
        shown,
        [
            "bpf/cache_ops.h",
            "bpf/cache_policy.bpf.c",
            "bpf/cache_policy_bad.bpf.c",
            "crates/structops/examples/cache_policy.rs",
        ]
    );
    for (file, parts) in &blocks {
        for p in parts {
            assert!(
                !p.starts_with('\n') && !p.ends_with("\n\n"),
                "{file}: a block starts or ends with an empty line"
            );
        }
        let joined = parts.join("\n");
        let committed = read(file);
        if joined != committed {
            let line = joined
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .map_or(joined.lines().count().min(committed.lines().count()), |i| i);
            panic!(
                "docs/HOSTS.md shows {file} differently from the committed file, from line {}: \
                 doc {:?}, file {:?}",
                line + 1,
                joined.lines().nth(line),
                committed.lines().nth(line)
            );
        }
    }
}

#[test]
fn the_header_is_what_the_host_btf_dumps_to() {
    // What `structops btf dump FILE --format c` writes for the example's `--btf FILE`.
    let btf = cache_policy::host_btf();
    let mut out = Vec::new();
    structops_btf::dump::c_header(&btf, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        read("bpf/cache_ops.h"),
        "bpf/cache_ops.h is stale: regenerate it as docs/HOSTS.md says"
    );
    // The layouts the header promises are the Rust ones.
    let ops = btf
        .find_by_name_kind("cache_ops", structops_btf::Kind::Struct)
        .unwrap();
    assert_eq!(
        btf.size_of(ops).unwrap() as usize,
        size_of::<cache_policy::CacheOps>()
    );
}

#[test]
fn the_committed_objects_are_what_clang_makes_of_the_c() {
    let r = root();
    let info = read("bpf/BUILD_INFO");
    let Ok(v) = std::process::Command::new("clang-19")
        .arg("--version")
        .output()
    else {
        println!("skipped: clang-19 is not installed");
        return;
    };
    let version = String::from_utf8_lossy(&v.stdout);
    let version = version.lines().next().unwrap_or_default();
    if !info.contains(&format!("clang: {version}\n")) {
        println!("skipped: the objects were built by another clang than '{version}'");
        return;
    }
    let headers = ["include/bpf/bpf_helpers.h", "vmlinux.h"];
    if !headers
        .iter()
        .all(|h| r.join("conformance/build").join(h).exists())
    {
        println!("skipped: no libbpf headers (conformance/build.sh --headers-only)");
        return;
    }
    let out = std::env::temp_dir().join(format!("hosts_doc_{}", std::process::id()));
    let objs = ["cache_policy.bpf.o", "cache_policy_bad.bpf.o"];
    let status = std::process::Command::new("make")
        .args(["-s", "-C"])
        .arg(r.join("bpf"))
        .arg(format!("OUT={}", out.display()))
        .args(objs.map(|o| out.join(o)))
        .status();
    let built: Vec<_> = objs.iter().map(|o| std::fs::read(out.join(o))).collect();
    let _ = std::fs::remove_dir_all(&out);
    let Ok(status) = status else {
        println!("skipped: make is not installed");
        return;
    };
    assert!(status.success(), "make -C bpf failed for the example");
    for (o, b) in objs.iter().zip(built) {
        let committed = std::fs::read(r.join("bpf").join(o)).unwrap();
        assert!(
            b.unwrap() == committed,
            "bpf/{o} differs from a fresh build: make -C bpf"
        );
    }
}

/// The reference: the cache with its policies written in Rust. LRU stamps a slot on
/// every access, FIFO only on insertion; `evict` frees the slot with the oldest stamp
/// (the first one on a tie); `admit` refuses entries over 64 KiB with `E2BIG`.
struct Reference {
    slots: [Option<(u64, u64)>; CACHE_SLOTS],
    stamps: [u64; CACHE_SLOTS],
    clock: u64,
    fifo: bool,
}

impl Reference {
    fn new() -> Reference {
        Reference {
            slots: [None; CACHE_SLOTS],
            stamps: [0; CACHE_SLOTS],
            clock: 0,
            fifo: false,
        }
    }

    fn stamp(&mut self, slot: usize) {
        self.clock += 1;
        self.stamps[slot] = self.clock;
    }

    fn get(&mut self, key: u64, size: u32) -> Outcome {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|(k, _)| k == key))
        {
            let hits = &mut self.slots[i].as_mut().unwrap().1;
            *hits += 1;
            if !self.fifo {
                self.stamp(i);
            }
            return Outcome::Hit { slot: i as u32 };
        }
        if size > 65536 {
            return Outcome::Refused { errno: 7 };
        }
        let (slot, evicted) = match self.slots.iter().position(Option::is_none) {
            Some(free) => (free, None),
            None => {
                let oldest = (0..CACHE_SLOTS).min_by_key(|&i| self.stamps[i]).unwrap();
                (oldest, self.slots[oldest].map(|(k, _)| k))
            }
        };
        self.slots[slot] = Some((key, 0));
        self.stamp(slot);
        Outcome::Inserted {
            slot: slot as u32,
            evicted,
        }
    }
}

/// A skewed, deterministic workload: 24 keys, low keys far more often, and every 37th
/// request too large to cache.
fn workload(n: usize) -> Vec<(u64, u32)> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 24).min((x >> 8) % 24);
            let size = if i % 37 == 36 {
                1 << 20
            } else {
                64 + (x >> 32) as u32 % 4096
            };
            (key, size)
        })
        .collect()
}

fn end_to_end(engine: Engine) {
    let mut cache = Cache::new(engine).unwrap();
    let obj = cache_policy::load(&cache, cache_policy::POLICIES, "cache_policy.bpf.o").unwrap();
    for (name, prog) in obj.progs() {
        assert!(prog.is_verified(), "{name}");
        assert_eq!(prog.engine(), engine, "{name}");
    }
    let link = obj.attach_struct_ops(cache.runtime(), "lru").unwrap();
    assert_eq!(cache.policy_name().as_deref(), Some("lru"));

    // One policy at a time: the host's `reg` refuses a second one.
    let second = obj.attach_struct_ops(cache.runtime(), "fifo").unwrap_err();
    assert_eq!(second.errno(), Errno::EBUSY, "{second}");

    let mut reference = Reference::new();
    let (mut hits, mut evictions, mut refused) = (0, 0, 0);
    for (i, (key, size)) in workload(3000).into_iter().enumerate() {
        // Hot swaps between requests: LRU, FIFO, LRU again.
        let swap = match i {
            1000 => Some(("fifo", true)),
            2000 => Some(("lru", false)),
            _ => None,
        };
        if let Some((map, fifo)) = swap {
            link.update_map(cache.runtime(), &obj, map).unwrap();
            assert_eq!(cache.policy_name().as_deref(), Some(map));
            reference.fifo = fifo;
        }
        let got = cache.get(key, size).unwrap();
        assert_eq!(
            got,
            reference.get(key, size),
            "request {i}: get({key}, {size})"
        );
        match got {
            Outcome::Hit { .. } => hits += 1,
            Outcome::Inserted {
                evicted: Some(_), ..
            } => evictions += 1,
            Outcome::Refused { .. } => refused += 1,
            Outcome::Inserted { .. } => {}
        }
    }
    assert!(
        hits > 500 && evictions > 500 && refused > 50,
        "{hits} {evictions} {refused}"
    );

    // Detached: the host has no policy, and says so.
    link.detach(cache.runtime()).unwrap();
    assert_eq!(cache.policy_name(), None);
    assert!(matches!(cache.get(1, 64), Err(CacheError::NoPolicy)));

    // The bad policy: the host's write rule refuses it, with its message.
    let bad = cache_policy::load(&cache, cache_policy::BAD_POLICY, "cache_policy_bad.bpf.o");
    let Err(LoadError::ProgLoad {
        prog, errno, log, ..
    }) = bad
    else {
        panic!("the bad policy loaded, or failed elsewhere: {bad:?}");
    };
    assert_eq!((prog.as_str(), errno), ("forget_hits", Errno::EACCES));
    assert!(
        log.contains("\ncache policies may not write cache_entry (off 8, size 8)\n"),
        "{log}"
    );
}

#[test]
fn the_example_runs_on_the_interpreter() {
    end_to_end(Engine::Interp);
}

#[test]
fn the_example_runs_on_the_jit() {
    end_to_end(Engine::Jit);
}

#[test]
fn the_example_main_runs() {
    cache_policy::main().unwrap();
}
