//! Several threads hammer one HASH and one ARRAY map with updates, deletes and lookups,
//! from the syscall side and the program side. Values are self-checking (a checksum over
//! the key and a per-key sequence number), each key has one writer that knows what it
//! last stored, and readers verify every value they see: a torn value fails the
//! checksum, a lost update or delete fails the writer's own read-back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use structops::{BPF_ANY, BPF_EXIST, BPF_NOEXIST, Errno, MapCreateAttr, MapType, Runtime};

const KEYS: u32 = 256;
const WRITERS: u32 = 4;
const READERS: u32 = 3;
const ITERS: u64 = 100_000;
const MAGIC: u64 = 0x9e37_79b9_7f4a_7c15;

fn value(key: u32, seq: u64) -> [u8; 32] {
    let w0 = u64::from(key);
    let w1 = seq;
    let w2 = w0 ^ w1.rotate_left(17) ^ MAGIC;
    let w3 = w0.wrapping_add(w1).wrapping_mul(31).wrapping_add(w2);
    let mut v = [0u8; 32];
    for (i, w) in [w0, w1, w2, w3].iter().enumerate() {
        v[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
    v
}

/// The key and sequence number in `v`, or `None` if it is not a consistent value.
fn check(v: &[u8; 32]) -> Option<(u32, u64)> {
    let w = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    let key = u32::try_from(w(0)).ok()?;
    (value(key, w(1)) == *v).then_some((key, w(1)))
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hammer_hash_and_array() {
    let rt = Arc::new(Runtime::default());
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 32, KEYS))
        .unwrap();
    let array = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 32, KEYS))
        .unwrap();
    for k in 0..KEYS {
        rt.map_update_elem(&array, Some(&k.to_ne_bytes()), &value(k, 0), BPF_ANY)
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let mut readers = vec![];
    for r in 0..READERS {
        let (rt, hash, array, stop, checked) = (
            rt.clone(),
            hash.clone(),
            array.clone(),
            stop.clone(),
            checked.clone(),
        );
        readers.push(thread::spawn(move || {
            let mut rng = Rng(0x1234 + u64::from(r));
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = (rng.next() % u64::from(KEYS)) as u32;
                let kb = k.to_ne_bytes();
                let mut v = [0u8; 32];
                match rt.map_lookup_elem(&hash, Some(&kb), &mut v, 0) {
                    Ok(()) => assert_eq!(check(&v).map(|x| x.0), Some(k), "torn hash value {v:?}"),
                    Err(e) => assert_eq!(e, Errno::ENOENT),
                }
                rt.map_lookup_elem(&array, Some(&kb), &mut v, 0).unwrap();
                assert_eq!(check(&v).map(|x| x.0), Some(k), "torn array value {v:?}");
                // The program side: read through the pointer while pinned.
                let guard = structops::read_lock();
                if let Some(p) = hash.lookup_ptr(&kb, &guard) {
                    let mut pv = [0u8; 32];
                    // SAFETY: a 32-byte value, valid while `guard` is held; hash values
                    // are never written in place by the syscall side.
                    unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), pv.as_mut_ptr(), 32) };
                    assert_eq!(check(&pv).map(|x| x.0), Some(k), "torn program-side value");
                }
                drop(guard);
                n += 3;
            }
            checked.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let mut writers = vec![];
    for t in 0..WRITERS {
        let (rt, hash, array) = (rt.clone(), hash.clone(), array.clone());
        writers.push(thread::spawn(move || {
            let mut rng = Rng(0xabcd + u64::from(t));
            let mine: Vec<u32> = (0..KEYS).filter(|k| k % WRITERS == t).collect();
            let mut hash_state: Vec<Option<u64>> = vec![None; mine.len()];
            let mut array_state: Vec<u64> = vec![0; mine.len()];
            for i in 1..=ITERS {
                let slot = (rng.next() % mine.len() as u64) as usize;
                let k = mine[slot];
                let kb = k.to_ne_bytes();
                let prog_side = rng.next().is_multiple_of(4);
                match rng.next() % 4 {
                    0 | 1 => {
                        let flags = match hash_state[slot] {
                            Some(_) => BPF_EXIST,
                            None => BPF_NOEXIST,
                        };
                        if prog_side {
                            let g = structops::read_lock();
                            hash.update_from_prog(&kb, &value(k, i), flags, &g).unwrap();
                        } else {
                            rt.map_update_elem(&hash, Some(&kb), &value(k, i), flags)
                                .unwrap();
                        }
                        hash_state[slot] = Some(i);
                    }
                    2 => {
                        let r = if prog_side {
                            hash.delete_from_prog(&kb, &structops::read_lock())
                        } else {
                            rt.map_delete_elem(&hash, Some(&kb))
                        };
                        match hash_state[slot] {
                            Some(_) => r.unwrap(),
                            None => assert_eq!(r, Err(Errno::ENOENT)),
                        }
                        hash_state[slot] = None;
                    }
                    _ => {
                        if prog_side {
                            let g = structops::read_lock();
                            array
                                .update_from_prog(&kb, &value(k, i), BPF_ANY, &g)
                                .unwrap();
                        } else {
                            rt.map_update_elem(&array, Some(&kb), &value(k, i), BPF_ANY)
                                .unwrap();
                        }
                        array_state[slot] = i;
                    }
                }
                // Read back what this writer (the only one for `k`) stored last.
                let mut v = [0u8; 32];
                match (
                    hash_state[slot],
                    rt.map_lookup_elem(&hash, Some(&kb), &mut v, 0),
                ) {
                    (Some(seq), Ok(())) => assert_eq!(check(&v), Some((k, seq)), "lost update"),
                    (None, Err(Errno::ENOENT)) => {}
                    (s, r) => panic!("key {k}: expected {s:?}, got {r:?}"),
                }
                rt.map_lookup_elem(&array, Some(&kb), &mut v, 0).unwrap();
                assert_eq!(check(&v), Some((k, array_state[slot])), "lost array update");
            }
            (hash_state.iter().filter(|s| s.is_some()).count(), ITERS)
        }));
    }
    let mut live = 0;
    for w in writers {
        live += w.join().unwrap().0;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(checked.load(Ordering::Relaxed) > 0, "readers ran");
    assert_eq!(
        hash.hash_len(),
        live,
        "element count matches the writers' view"
    );
    // Every surviving element is consistent and the count agrees with a full walk.
    let mut walked = 0;
    let mut key: Option<[u8; 4]> = None;
    let mut next = [0u8; 4];
    while rt
        .map_get_next_key(&hash, key.as_ref().map(|k| &k[..]), &mut next)
        .is_ok()
    {
        walked += 1;
        key = Some(next);
    }
    assert_eq!(walked, live);
}
