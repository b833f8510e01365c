//! The struct_ops map update path with arbitrary values, against the TCP host: shared by
//! the `struct_ops_update` fuzz target (`fuzz/fuzz_targets/struct_ops_update.rs`) and its
//! bounded twin `tests/struct_ops_update.rs`.
//!
//! One input is one `tcp_congestion_ops` value (`bpf_struct_ops_tcp_congestion_ops`)
//! written into a fresh struct_ops map. The input's first bytes choose the map's flags
//! (`BPF_F_LINK` or not), the update flags, and which function members get a real program
//! (one of `bpf/reno.bpf.o`'s three, in its own slot or in the wrong one); the rest are the
//! value's bytes as given. Whatever the bytes, the update, the registration (`reg`, or
//! `link_create`), a socket's calls through a registered table, and the teardown must end
//! in a result or an errno — never a panic or a fault — and leave the host's registry and
//! the runtime's maps as they were.

use std::sync::Arc;

use structops::loader::LoadedObject;
use structops::struct_ops::{BPF_F_LINK, LinkCreateAttr, MAP_TYPE_STRUCT_OPS};
use structops::{Errno, MapCreateAttr, ObjKind, OpsType, Runtime};
use structops_btf::{BtfBuilder, INT_SIGNED};
use structops_tcp::{HostConfig, TcpHost};

/// What happened to one input, for the twin's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `map_update_elem` refused the value.
    UpdateRefused(Errno),
    /// The update was accepted but registering it failed.
    RegisterRefused(Errno),
    /// Registered, called and unregistered.
    Registered,
    /// Accepted but not registered (the kernel's silent reset when `owner` is set).
    Unregistered,
}

/// A TCP host with the programs an input may place in the table.
pub struct Harness {
    host: TcpHost,
    ops: Arc<OpsType>,
    _obj: LoadedObject,
    /// `(member index, program fd)` of each program of `reno.bpf.o`.
    progs: Vec<(u32, u32)>,
    btf_fd: u32,
    baseline: Vec<String>,
}

/// `bpf/reno.bpf.o`, compiled in.
const RENO: &[u8] = include_bytes!("../../../../bpf/reno.bpf.o");

impl Harness {
    /// Sets the host up.
    pub fn new() -> Harness {
        let host = TcpHost::new(HostConfig::default()).expect("host");
        let obj = host.load(RENO, "reno.bpf.o").expect("reno.bpf.o loads");
        let rt = host.runtime();
        let ops = host.ops_type().clone();
        // The BTF first: descriptor 0 in a value means "no program", so programs must
        // not get it.
        let mut b = BtfBuilder::new();
        b.add_int("int", 4, INT_SIGNED);
        let btf = rt.btf_load(&b.build().encode()).expect("btf");
        let btf_fd = rt.fd_install(btf).expect("btf fd");
        let mut progs = Vec::new();
        for (name, p) in obj.progs() {
            let member = ops
                .members()
                .iter()
                .find(|m| name.ends_with(&m.name))
                .map_or(u32::MAX, |m| m.index);
            let fd = rt.fd_install(p.clone()).expect("fd");
            progs.push((member, fd));
        }
        let baseline = host.available();
        Harness {
            host,
            ops,
            _obj: obj,
            progs,
            btf_fd,
            baseline,
        }
    }

    /// An input that registers: a link map (or not), the name `name`, and each of
    /// reno's programs in its own member.
    pub fn good_input(&self, link: bool, name: &str) -> Vec<u8> {
        let mut choose = 0u32;
        for m in self.ops.members() {
            if self.progs.iter().any(|p| p.0 == m.index) && m.index < 23 {
                choose |= 1 << m.index;
            }
        }
        let [c0, c1, c2, _] = choose.to_le_bytes();
        let mut input = vec![u8::from(link), c0, c1, c2];
        let mut value = vec![0u8; self.ops.value_size() as usize];
        if let Some(m) = self.ops.members().iter().find(|m| m.name == "name") {
            let off = self.ops.data_offset() as usize + m.offset as usize;
            let n = name.len().min(15);
            value[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        }
        input.extend(value);
        input
    }

    fn rt(&self) -> &Runtime {
        self.host.runtime()
    }

    /// Runs one input; panics (a finding) only when an invariant breaks.
    pub fn run(&self, input: &[u8]) -> Outcome {
        let rt = self.rt();
        let maps_before = count(rt, ObjKind::Map);
        let (head, body) = input.split_at(input.len().min(4));
        let byte = |i: usize| head.get(i).copied().unwrap_or(0);
        let link = byte(0) & 1 == 1;
        let flags = u64::from(byte(0) >> 1 & 3); // BPF_ANY, NOEXIST, EXIST, F_LOCK
        let value_size = self.ops.value_size() as usize;
        let mut value = body.to_vec();
        value.resize(value_size, 0);
        // Programs into function members: bit i of bytes 1-3 (bits 0-22) gives member i
        // a program — the one written for it, or with bit 23 set one chosen by the
        // member's index, most often another member's.
        let data = self.ops.data_offset() as usize;
        let choose = u32::from_le_bytes([byte(1), byte(2), byte(3), 0]);
        let wrong = choose >> 23 & 1 == 1;
        for (i, m) in self.ops.members().iter().enumerate().take(23) {
            if choose >> i & 1 == 0 || m.func_proto().is_none() {
                continue;
            }
            let fd = if wrong {
                self.progs.get(i % self.progs.len().max(1)).map(|p| p.1)
            } else {
                self.progs.iter().find(|p| p.0 == m.index).map(|p| p.1)
            };
            let Some(fd) = fd else { continue };
            let off = data + m.offset as usize;
            if let Some(slot) = value.get_mut(off..off + 8) {
                slot.copy_from_slice(&u64::from(fd).to_ne_bytes());
            }
        }
        let attr = MapCreateAttr {
            map_type: MAP_TYPE_STRUCT_OPS,
            key_size: 4,
            value_size: value_size as u32,
            max_entries: 1,
            map_flags: if link { BPF_F_LINK } else { 0 },
            btf_fd: self.btf_fd,
            btf_vmlinux_value_type_id: self.ops.value_id(),
            ..MapCreateAttr::default()
        };
        let map = rt
            .map_create(&attr)
            .expect("a struct_ops map of the host's type");
        let key = 0u32.to_ne_bytes();
        let outcome = match rt.map_update_elem(&map, Some(&key), &value, flags) {
            Err(e) => Outcome::UpdateRefused(e),
            Ok(()) if link => {
                let fd = rt.fd_install(map.clone()).expect("map fd");
                let r = rt.link_create(&LinkCreateAttr::struct_ops(fd));
                let _ = rt.fd_close(fd);
                match r {
                    Err(e) => Outcome::RegisterRefused(e),
                    Ok(l) => {
                        self.exercise();
                        rt.link_detach(&l).expect("detach a live link");
                        Outcome::Registered
                    }
                }
            }
            Ok(()) => {
                self.exercise();
                match rt.map_delete_elem(&map, Some(&key)) {
                    Ok(()) => Outcome::Registered,
                    // The kernel's silent reset: with `owner` set the update reports
                    // success but registers nothing, so there is nothing to delete.
                    Err(Errno::ENOENT) => Outcome::Unregistered,
                    Err(e) => panic!("deleting a registered map: {e}"),
                }
            }
        };
        // A second update of a map that was registered is refused (`EBUSY`: its state is
        // no longer INIT), as in the kernel. (An accepted update need not leave the map
        // READY: with `owner` set the kernel resets it silently and reports success.)
        if outcome == Outcome::Registered {
            let again = rt.map_update_elem(&map, Some(&key), &value, 0);
            assert!(
                again.is_err(),
                "a struct_ops map updated twice after {outcome:?}, link {link}"
            );
        }
        drop(map);
        // Tables are freed once no reader can see them: push the epoch along.
        for _ in 0..64 {
            if count(rt, ObjKind::Map) == maps_before {
                break;
            }
            structops::read_lock().flush();
        }
        assert_eq!(
            self.host.available(),
            self.baseline,
            "the registry changed: {outcome:?}"
        );
        assert_eq!(
            count(rt, ObjKind::Map),
            maps_before,
            "a map outlived its handle"
        );
        outcome
    }

    /// Runs a socket on every congestion control registered beyond the baseline.
    fn exercise(&self) {
        for name in self.host.available() {
            if self.baseline.contains(&name) {
                continue;
            }
            let mut sock = self.host.socket();
            if self.host.set_congestion_control(&mut sock, &name).is_err() {
                continue;
            }
            for _ in 0..3 {
                sock.ca_cong_avoid(1, 1);
            }
            let _ = sock.ca_ssthresh();
            let _ = sock.ca_undo_cwnd();
            sock.ca_release();
        }
    }
}

/// Live objects of `kind`.
fn count(rt: &Runtime, kind: ObjKind) -> usize {
    let mut n = 0;
    let mut id = 0;
    while let Ok(next) = rt.get_next_id(kind, id) {
        n += 1;
        id = next;
    }
    n
}
