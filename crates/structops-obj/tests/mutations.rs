//! Every fixture and every corpus object, truncated and bit-flipped: parsing and the pure
//! load steps end in an object or a typed error — never a panic — and never allocate more
//! than a fixed multiple of the input. A counting global allocator measures the peak.
//!
//! This binary holds a single test so the allocator sees only its own work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use structops_btf::Btf;
use structops_obj::{Object, ParseOptions};

struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A small deterministic generator (xorshift64*), so every run tries the same inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn objects() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut v = Vec::new();
    for dir in [root.join("bpf"), root.join("conformance/build/corpus")] {
        if let Ok(d) = std::fs::read_dir(&dir) {
            v.extend(
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with(".bpf.o")),
            );
        } else {
            eprintln!("note: {} not present, not mutated", dir.display());
        }
    }
    v.sort();
    v
}

/// Runs parse and every load step that needs no host, measuring the allocation peak
/// above what was in use before.
fn exercise(bytes: &[u8]) -> usize {
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    if let Ok(mut obj) = Object::parse_with(bytes, &ParseOptions::named("mut")) {
        let _ = obj.relocate(&|m| m as i32);
        if let Some(btf) = obj.btf().cloned() {
            let _ = obj.init_struct_ops(&btf);
            let _ = obj.relocate_core(&btf);
            let _ = obj.relocate(&|m| m as i32);
        }
    }
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// The allowance: generous for real objects (whose parsed form, BTF and relocated copies
/// are several times the file), but bounded by the input, not by counts read from it.
fn allowance(len: usize) -> usize {
    (64 * len).max(16 << 20)
}

#[test]
fn truncated_and_bit_flipped_objects_fail_cleanly_within_bounded_memory() {
    let files = objects();
    assert!(!files.is_empty(), "the bpf/ fixtures are committed");
    let mut rng = Rng(0x5eed_0b1e_c7ed_u64);
    let (mut tried, mut parsed) = (0usize, 0usize);
    for f in &files {
        let data = std::fs::read(f).expect("fixture readable");
        assert!(
            exercise(&data) <= allowance(data.len()),
            "{}: intact",
            f.display()
        );
        if Object::parse_with(&data, &ParseOptions::named("mut")).is_ok() {
            parsed += 1;
        }
        // Truncations at random points and at every header-ish boundary.
        let mut cuts: Vec<usize> = (0..16).map(|_| rng.below(data.len())).collect();
        cuts.extend([0, 1, 4, 16, 52, 63, 64, data.len().saturating_sub(1)]);
        for cut in cuts {
            let peak = exercise(&data[..cut.min(data.len())]);
            assert!(
                peak <= allowance(data.len()),
                "{} cut at {cut}: {peak} bytes",
                f.display()
            );
            tried += 1;
        }
        // Single and multiple bit flips anywhere.
        for round in 0..32 {
            let mut m = data.clone();
            for _ in 0..=(round % 4) {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            let peak = exercise(&m);
            assert!(
                peak <= allowance(m.len()),
                "{} flip round {round}: {peak} bytes",
                f.display()
            );
            tried += 1;
        }
    }
    // The kernel's own BTF, bit-flipped: the BTF parser under the largest real input.
    if let Ok(vmlinux) = std::fs::read("/sys/kernel/btf/vmlinux") {
        for _ in 0..24 {
            let mut m = vmlinux.clone();
            let i = rng.below(m.len());
            m[i] ^= 1 << rng.below(8);
            let base = IN_USE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let _ = Btf::parse(&m).map(|b| b.encode());
            let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
            assert!(peak <= 16 * m.len(), "vmlinux flip at {i}: {peak} bytes");
            tried += 1;
        }
    }
    eprintln!(
        "{} objects ({parsed} parse intact), {tried} mutations, no panic",
        files.len()
    );
}
