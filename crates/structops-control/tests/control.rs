//! The control socket against a live server: framing, access control, hostile input.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use structops::{Errno, MapCreateAttr, MapHandle, MapType, Runtime};
use structops_control::frame::{self, DEFAULT_MAX_FRAME, FrameError, MAGIC, VERSION};
use structops_control::{
    BtfEntry, Controller, JitedProg, MAX_REMOTE_REPEAT, RunOutput, XlatedProg,
};
use structops_control::{
    ClientError, ControlClient, ControlError, ControlServer, LinkEntry, MapEntry, OpsTypeEntry,
    ProgEntry, Registered, Request, Response, Role, Serve, ServeConfig, Step, StructOpsEntry,
    Target,
};

fn sock_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "structops-ctl-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ctl.sock")
}

fn euid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }
}

fn setup(config: ServeConfig) -> (Arc<Runtime>, MapHandle, ControlServer) {
    let rt = Arc::new(Runtime::default());
    let map = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 64).name("counts"))
        .unwrap();
    let server = rt.serve(sock_path("t"), config).unwrap();
    (rt, map, server)
}

fn every_request() -> Vec<Request> {
    vec![
        Request::ListProgs,
        Request::ListMaps,
        Request::ListLinks,
        Request::ListStructOpsTypes,
        Request::ListStructOps,
        Request::MapLookup {
            id: 3,
            key: vec![1, 2, 3, 4],
        },
        Request::MapUpdate {
            id: 3,
            key: vec![1],
            value: vec![9; 8],
            flags: 2,
        },
        Request::MapDelete {
            id: u32::MAX,
            key: vec![],
        },
        Request::MapDump { id: 7 },
        Request::StructOpsRegister {
            object: vec![0x7f, b'E', b'L', b'F'],
            path: "a.bpf.o".into(),
            map: Some("ca".into()),
        },
        Request::StructOpsUnregister {
            target: Target::Id(5),
        },
        Request::StructOpsUnregister {
            target: Target::Name("ca".into()),
        },
        Request::LinkUpdate {
            link_id: 2,
            object: vec![1; 300],
            path: "b.o".into(),
            map: None,
        },
        Request::LinkDetach { link_id: 2 },
        Request::Status,
        Request::ProgXlated { id: 1 },
        Request::ProgJited { id: u32::MAX },
        Request::ListBtf,
        Request::BtfGet { id: 0 },
        Request::ProgRun {
            id: 4,
            args: vec![1, u64::MAX],
            data_in: Some(vec![0; 64]),
            ctx_in: None,
            repeat: 10,
        },
    ]
}

fn every_response() -> Vec<Response> {
    vec![
        Response::Error(ControlError::new(Errno::EPERM, Step::Access, "uid 1")),
        Response::Progs(vec![ProgEntry {
            id: 1,
            prog_type: 27,
            name: "p".into(),
            tag: [1; 8],
            gpl_compatible: true,
            load_time: u64::MAX,
            xlated_len: 8,
            jited_len: 30,
            map_ids: vec![1, 2],
            btf_id: 4,
        }]),
        Response::Maps(vec![MapEntry {
            id: 1,
            map_type: 1,
            name: "m".into(),
            key_size: 4,
            value_size: 8,
            sys_value_size: 8,
            max_entries: 9,
            map_flags: 0,
            btf_id: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            btf_vmlinux_value_type_id: 0,
        }]),
        Response::Links(vec![LinkEntry {
            id: 1,
            link_type: 9,
            prog_id: 0,
            map_id: 3,
        }]),
        Response::StructOpsTypes(vec![OpsTypeEntry {
            name: "tcp_congestion_ops".into(),
            size: 152,
            value_size: 168,
            members: vec!["ssthresh".into()],
        }]),
        Response::StructOps(vec![StructOpsEntry {
            map_id: 3,
            name: "ca".into(),
            ops_type: "t".into(),
            state: 3,
            link_map: true,
            value: "{}\n".into(),
        }]),
        Response::Value(vec![1, 2]),
        Response::Entries(vec![(vec![1], vec![2, 3]), (vec![], vec![])]),
        Response::Registered(vec![
            Registered {
                name: "ca".into(),
                map_id: 3,
                link_id: Some(1),
            },
            Registered {
                name: "x".into(),
                map_id: 4,
                link_id: None,
            },
        ]),
        Response::Done,
        Response::Status("{\"flows\":[]}".into()),
        Response::Xlated(XlatedProg {
            name: "p".into(),
            tag: [7; 8],
            insns: vec![[0x95, 0, 0, 0, 0, 0, 0, 0]],
            kfuncs: vec![(12, "bpf_kfunc".into())],
        }),
        Response::Jited(JitedProg {
            name: "p".into(),
            tag: [0; 8],
            code: vec![0xc3],
            functions: vec![(0, 0, 1)],
        }),
        Response::Btfs(vec![BtfEntry {
            id: 1,
            name: "vmlinux".into(),
            size: 100,
            kernel: true,
        }]),
        Response::Btf(vec![0x9f, 0xeb]),
        Response::Ran(RunOutput {
            retval: 2,
            duration_ns: 15,
            data_out: Some(vec![1; 14]),
            ctx_out: None,
        }),
    ]
}

#[test]
fn every_message_round_trips_through_the_framing() {
    for req in every_request() {
        let bytes = frame::encode(&req, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(&bytes[..4], &MAGIC);
        assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), VERSION);
        let len = u32::from_le_bytes(bytes[6..10].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 10);
        let back: Request = frame::read_message(&mut &bytes[..], DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(back, req);
    }
    for resp in every_response() {
        let bytes = frame::encode(&resp, DEFAULT_MAX_FRAME).unwrap();
        let back: Response = frame::read_message(&mut &bytes[..], DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(back, resp);
    }
}

#[test]
fn framing_refuses_bad_headers_and_sizes() {
    let good = frame::encode(&Request::ListMaps, 64).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        frame::read_payload(&mut &bad_magic[..], 64),
        Err(FrameError::Magic { .. })
    ));
    let mut bad_version = good.clone();
    bad_version[4] = 9;
    assert!(matches!(
        frame::read_payload(&mut &bad_version[..], 64),
        Err(FrameError::Version { found: 9 })
    ));
    let mut huge = good.clone();
    huge[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        frame::read_payload(&mut &huge[..], 64),
        Err(FrameError::TooLarge { .. })
    ));
    let big = Request::MapLookup {
        id: 1,
        key: vec![0; 100],
    };
    assert!(matches!(
        frame::encode(&big, 64),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(matches!(
        frame::read_payload(&mut &good[..5], 64),
        Err(FrameError::Truncated(_))
    ));
    assert!(matches!(
        frame::read_payload(&mut &[][..], 64),
        Err(FrameError::Closed)
    ));
    // A frame carries exactly one message.
    let mut trailing = frame::encode(&Request::ListMaps, 64).unwrap();
    trailing.push(0);
    trailing[6..10].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        frame::read_message::<Request>(&mut &trailing[..], 64),
        Err(FrameError::Decode(_))
    ));
}

#[test]
fn socket_file_is_0600_and_removed_on_stop() {
    // A permissive umask must not loosen the socket's mode.
    // SAFETY: umask has no preconditions; restored below.
    let old = unsafe { libc::umask(0) };
    let (_rt, _map, mut server) = setup(ServeConfig::default());
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let path = server.path().to_path_buf();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // A second server on the same path is refused, not silently replacing the first.
    let rt2 = Arc::new(Runtime::default());
    assert!(matches!(
        rt2.serve(&path, ServeConfig::default()),
        Err(structops_control::ServeError::Exists { .. })
    ));
    server.stop();
    assert!(!path.exists());
    assert!(ControlClient::connect(&path).is_err());
}

#[test]
fn map_commands_and_lists_work_through_the_socket() {
    let (rt, map, server) = setup(ServeConfig::default());
    let mut c = ControlClient::connect(server.path()).unwrap();
    let maps = c.list_maps().unwrap();
    assert_eq!(maps.len(), 1);
    assert_eq!(
        (
            maps[0].id,
            maps[0].name.as_str(),
            maps[0].key_size,
            maps[0].value_size
        ),
        (map.id(), "counts", 4, 8)
    );
    for k in 0u32..5 {
        c.map_update(
            map.id(),
            &k.to_ne_bytes(),
            &u64::from(k * 10).to_ne_bytes(),
            0,
        )
        .unwrap();
    }
    // The update reached the runtime itself.
    let mut v = [0u8; 8];
    rt.map_lookup_elem(&map, Some(&3u32.to_ne_bytes()), &mut v, 0)
        .unwrap();
    assert_eq!(u64::from_ne_bytes(v), 30);
    assert_eq!(
        c.map_lookup(map.id(), &4u32.to_ne_bytes()).unwrap(),
        40u64.to_ne_bytes()
    );
    c.map_delete(map.id(), &4u32.to_ne_bytes()).unwrap();
    let e = c.map_lookup(map.id(), &4u32.to_ne_bytes()).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOENT));
    let mut dump = c.map_dump(map.id()).unwrap();
    dump.sort();
    let want: Vec<_> = (0u32..4)
        .map(|k| {
            (
                k.to_ne_bytes().to_vec(),
                u64::from(k * 10).to_ne_bytes().to_vec(),
            )
        })
        .collect();
    assert_eq!(dump, want);
    // BPF_NOEXIST on a present key: the runtime's errno comes back typed.
    let e = c
        .map_update(
            map.id(),
            &0u32.to_ne_bytes(),
            &[0; 8],
            structops::BPF_NOEXIST,
        )
        .unwrap_err();
    match e {
        ClientError::Remote(ce) => assert_eq!((ce.errno(), ce.step), (Errno::EEXIST, Step::Map)),
        other => panic!("{other:?}"),
    }
    let e = c.map_lookup(999, &[0; 4]).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOENT));
    assert!(c.list_progs().unwrap().is_empty());
    assert!(c.list_links().unwrap().is_empty());
    assert!(c.list_struct_ops().unwrap().is_empty());
    // The runtime's built-in ops types are listed.
    let types = c.list_struct_ops_types().unwrap();
    assert_eq!(types.len(), rt.struct_ops_types().len());
    // No status hook installed.
    assert_eq!(c.status().unwrap_err().errno(), Some(Errno::EOPNOTSUPP));
    // Unregistering what does not exist.
    assert_eq!(
        c.struct_ops_unregister(Target::Name("nope".into()))
            .unwrap_err()
            .errno(),
        Some(Errno::ENOENT)
    );
    assert_eq!(
        c.struct_ops_unregister(Target::Id(map.id()))
            .unwrap_err()
            .errno(),
        Some(Errno::EINVAL)
    );
    // A garbage object fails at the open step.
    let e = c
        .struct_ops_register(b"not an elf", "x.o", None)
        .unwrap_err();
    match e {
        ClientError::Remote(ce) => assert_eq!(ce.step, Step::Open),
        other => panic!("{other:?}"),
    }
}

#[test]
fn programs_are_dumped_through_the_socket_and_in_process_alike() {
    let (rt, map, server) = setup(ServeConfig::default());
    let mut c = ControlClient::connect(server.path()).unwrap();
    // A map reference is an fd at load time; install the map so the fd resolves.
    let fd = rt.fd_install(map.clone()).unwrap();
    let src = format!("r1 = map[id:{fd}]\nr2 = 7\nr0 = r2\nexit");
    let insns2 = structops_isa::assemble(&src).unwrap().encode();
    let prog = rt
        .prog_load(
            &structops::ProgLoadAttr::new(structops::ProgType::SOCKET_FILTER, insns2, "GPL")
                .name("seven"),
        )
        .unwrap();
    let progs = c.list_progs().unwrap();
    assert_eq!(progs.len(), 1);
    assert_eq!((progs[0].id, progs[0].name.as_str()), (prog.id(), "seven"));
    assert_eq!(progs[0].map_ids, vec![map.id()]);
    let x = c.prog_xlated(prog.id()).unwrap();
    assert_eq!((x.name.as_str(), x.tag), ("seven", prog.tag()));
    assert_eq!(x.insns.len(), 5);
    // The map load shows the map's id, as `bpf_prog_info` does.
    let first = structops_isa::Insn::from_bytes(x.insns[0]);
    assert_eq!((first.src_reg(), first.imm), (1, map.id() as i32));
    // The in-process controller answers the same request with the same bytes.
    let local = Controller::new(rt.clone(), None);
    assert_eq!(
        local.handle(Request::ProgXlated { id: prog.id() }),
        Response::Xlated(x.clone())
    );
    match c.prog_jited(prog.id()) {
        Ok(j) => {
            assert_eq!(j.name, "seven");
            assert!(!j.code.is_empty());
            assert_eq!(j.functions.first().map(|f| f.0), Some(0));
            let (_, start, size) = j.functions[0];
            assert!((start + size) as usize <= j.code.len());
        }
        // A build without the JIT runs programs on the interpreter.
        Err(e) => assert_eq!(e.errno(), Some(Errno::EOPNOTSUPP)),
    }
    assert_eq!(
        c.prog_xlated(prog.id() + 100).unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
    // Test runs in the host: the socket filter returns 7 for any packet.
    let r = c
        .prog_run(prog.id(), &[], Some(&[0u8; 64]), None, 3)
        .unwrap();
    assert_eq!(r.retval, 7);
    assert_eq!(
        c.prog_run(
            prog.id(),
            &[],
            Some(&[0u8; 64]),
            None,
            MAX_REMOTE_REPEAT + 1
        )
        .unwrap_err()
        .errno(),
        Some(Errno::E2BIG)
    );
    assert_eq!(
        c.prog_run(prog.id() + 100, &[], None, None, 0)
            .unwrap_err()
            .errno(),
        Some(Errno::ENOENT)
    );
    // No BTF loaded: the list is empty and a lookup is ENOENT.
    assert_eq!(c.list_btf().unwrap(), Vec::<BtfEntry>::new());
    assert_eq!(c.btf_get(1).unwrap_err().errno(), Some(Errno::ENOENT));
}

#[test]
fn replies_over_the_frame_limit_are_e2big() {
    let rt = Arc::new(Runtime::default());
    let mut insns = structops_isa::assemble(&"r0 = 0\n".repeat(2000))
        .unwrap()
        .encode();
    insns.extend(structops_isa::assemble("exit").unwrap().encode());
    let prog = rt
        .prog_load(&structops::ProgLoadAttr::new(
            structops::ProgType::SOCKET_FILTER,
            insns,
            "GPL",
        ))
        .unwrap();
    let ctl = Controller::with_reply_limit(rt, None, 8192);
    match ctl.handle(Request::ProgXlated { id: prog.id() }) {
        Response::Error(e) => assert_eq!((e.errno(), e.step), (Errno::E2BIG, Step::Frame)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn status_hook_answers_json() {
    let config =
        ServeConfig::default().status(|| serde_json::json!({"flows": [{"id": 1, "cc": "reno"}]}));
    let (_rt, _map, server) = setup(config);
    let mut c = ControlClient::connect(server.path()).unwrap();
    assert_eq!(c.status().unwrap()["flows"][0]["cc"], "reno");
}

#[test]
fn a_uid_outside_the_allow_list_gets_eperm() {
    // The allow-list names only a uid that is not ours.
    let other = euid().wrapping_add(4242);
    let config = ServeConfig {
        allow: BTreeMap::from([(other, Role::ReadWrite)]),
        ..ServeConfig::default()
    };
    let (_rt, _map, server) = setup(config);
    let mut c = ControlClient::connect(server.path()).unwrap();
    match c.list_maps().unwrap_err() {
        ClientError::Remote(e) => assert_eq!((e.errno(), e.step), (Errno::EPERM, Step::Access)),
        other => panic!("{other:?}"),
    }
    // And the connection is closed after the refusal.
    assert!(c.list_maps().is_err());
}

#[test]
fn a_dropped_uid_child_gets_eperm() {
    if euid() != 0 {
        println!("skipped: needs root to setuid a child to 65534");
        return;
    }
    let (_rt, _map, server) = setup(ServeConfig::default());
    // The socket is 0600 root: a child with uid 65534 could not even connect by path, so
    // it connects before dropping privileges; SO_PEERCRED records the credentials at
    // connect time, so hand it an already connected socket... which would carry root's
    // credentials. Make the socket connectable instead and let the child connect as 65534.
    std::fs::set_permissions(server.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let path = std::ffi::CString::new(server.path().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: the child only calls async-signal-safe functions (setgid, setuid, socket,
    // connect, write, read, _exit) before exiting.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = unsafe { child_connects(&path, None) };
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status));
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child saw something other than EPERM (code {})",
        libc::WEXITSTATUS(status)
    );
}

/// In the forked child: drop to 65534, connect, send `ListMaps` (or, with `hold`, send
/// nothing), expect an EPERM reply. With `hold = (to_parent, from_parent)`, the child then
/// tells the parent through `to_parent` and keeps its connection open until the parent
/// writes to `from_parent`. Returns the exit code: 0 for EPERM.
unsafe fn child_connects(path: &std::ffi::CStr, hold: Option<(i32, i32)>) -> i32 {
    unsafe {
        if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
            return 10;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return 11;
        }
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.to_bytes();
        if bytes.len() >= addr.sun_path.len() {
            return 12;
        }
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
            return 13;
        }
        if hold.is_none() {
            // Pre-encoded in the parent's image: a ListMaps frame. The server refuses at
            // accept and may have closed already, so a failed write is not an error: the
            // refusal is still there to read.
            let [v0, v1] = VERSION.to_le_bytes();
            let req = [b'S', b'O', b'P', b'S', v0, v1, 1, 0, 0, 0, 1];
            libc::write(fd, req.as_ptr().cast(), req.len());
        } else {
            // Not a byte sent: the refusal must come anyway, and promptly.
            let tv = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                len,
            );
        }
        let mut buf = [0u8; 256];
        let mut got = 0usize;
        loop {
            let n = libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got);
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        // Response::Error is variant 0; its ControlError starts with errno 1 (EPERM) as a
        // zigzag varint (2), then Step::Access (variant 2).
        if got < 13 || buf[..4] != *b"SOPS" || buf[10] != 0 || buf[11] != 2 || buf[12] != 2 {
            return 15;
        }
        if let Some((to_parent, from_parent)) = hold {
            let mut b = [1u8];
            if libc::write(to_parent, b.as_ptr().cast(), 1) != 1 {
                return 16;
            }
            if libc::read(from_parent, b.as_mut_ptr().cast(), 1) != 1 {
                return 17;
            }
        }
        libc::close(fd);
        0
    }
}

/// A stranger is refused as soon as it connects, before it has sent anything, and takes
/// no connection slot: with one slot, the owner is served while the stranger's socket is
/// still open.
#[test]
fn a_refused_peer_takes_no_connection_slot() {
    if euid() != 0 {
        println!("skipped: needs root to setuid a child to 65534");
        return;
    }
    let config = ServeConfig {
        max_connections: 1,
        ..ServeConfig::default()
    };
    let (_rt, map, server) = setup(config);
    std::fs::set_permissions(server.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let path = std::ffi::CString::new(server.path().as_os_str().as_encoded_bytes()).unwrap();
    let (mut up, mut down) = ([0i32; 2], [0i32; 2]);
    // SAFETY: two arrays of two descriptors each.
    assert_eq!(unsafe { libc::pipe(up.as_mut_ptr()) }, 0);
    assert_eq!(unsafe { libc::pipe(down.as_mut_ptr()) }, 0);
    // SAFETY: as in `a_dropped_uid_child_gets_eperm`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = unsafe { child_connects(&path, Some((up[1], down[0]))) };
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the child's ends, closed in the parent so that a child that fails early
    // reads as end of file instead of a hang.
    unsafe {
        libc::close(up[1]);
        libc::close(down[0]);
    }
    let mut b = [0u8];
    // SAFETY: reads one byte from our pipe; 0 or -1 means the child failed first.
    let signalled = unsafe { libc::read(up[0], b.as_mut_ptr().cast(), 1) } == 1;
    let served = signalled
        && ControlClient::connect(server.path())
            .and_then(|mut c| c.list_maps())
            .is_ok_and(|maps| maps.iter().any(|m| m.id == map.id()));
    // SAFETY: releases the child, then reaps it; the descriptors are ours.
    unsafe {
        libc::write(down[1], b.as_ptr().cast(), 1);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::close(up[0]);
        libc::close(down[1]);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child was not refused at once"
        );
    }
    assert!(signalled);
    assert!(
        served,
        "the owner was not served while a refused peer was connected"
    );
}

#[test]
fn a_read_only_peer_cannot_write() {
    let config = ServeConfig::default().allow(euid(), Role::ReadOnly);
    let (_rt, map, server) = setup(config);
    let mut c = ControlClient::connect(server.path()).unwrap();
    assert_eq!(c.list_maps().unwrap().len(), 1);
    let e = c
        .map_update(map.id(), &1u32.to_ne_bytes(), &[0; 8], 0)
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EPERM));
    // The refusal does not end the session: reads still work.
    assert!(c.map_dump(map.id()).unwrap().is_empty());
    assert_eq!(
        c.struct_ops_unregister(Target::Id(1)).unwrap_err().errno(),
        Some(Errno::EPERM)
    );
}

fn raw_exchange(path: &std::path::Path, bytes: &[u8]) -> Option<Response> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let r = frame::read_message::<Response>(&mut s, DEFAULT_MAX_FRAME).ok();
    // Then the server closes the connection.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    r
}

#[test]
fn bad_frames_get_an_error_reply_and_a_closed_connection() {
    let (_rt, _map, server) = setup(ServeConfig::default());
    let cases: Vec<(Vec<u8>, Errno, Step)> = vec![
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            Errno::EINVAL,
            Step::Frame,
        ),
        (
            [&MAGIC[..], &VERSION.to_le_bytes(), &u32::MAX.to_le_bytes()].concat(),
            Errno::E2BIG,
            Step::Frame,
        ),
        (
            [
                &MAGIC[..],
                &VERSION.to_le_bytes(),
                &100u32.to_le_bytes(),
                &[0; 10],
            ]
            .concat(),
            Errno::EPROTO,
            Step::Frame,
        ),
        (
            [
                &MAGIC[..],
                &VERSION.to_le_bytes(),
                &2u32.to_le_bytes(),
                &[200, 200],
            ]
            .concat(),
            Errno::EINVAL,
            Step::Decode,
        ),
        (
            // A version this side does not speak.
            [
                &MAGIC[..],
                &(VERSION + 1).to_le_bytes(),
                &0u32.to_le_bytes(),
            ]
            .concat(),
            Errno::EINVAL,
            Step::Frame,
        ),
    ];
    for (bytes, errno, step) in cases {
        match raw_exchange(server.path(), &bytes) {
            Some(Response::Error(e)) => assert_eq!((e.errno(), e.step), (errno, step), "{bytes:?}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
}

/// Map commands whose key or value does not fit the map, or whose flags are unknown, come
/// back as the runtime's errno at the map step (a short key or value is `EFAULT`, as a
/// pointer the kernel cannot copy); the connection stays usable and the map unchanged.
#[test]
fn map_commands_with_wrong_sizes_and_flags_get_the_runtimes_errno() {
    let (rt, map, server) = setup(ServeConfig::default());
    rt.map_update_elem(&map, Some(&1u32.to_ne_bytes()), &5u64.to_ne_bytes(), 0)
        .unwrap();
    let mut c = ControlClient::connect(server.path()).unwrap();
    let remote = |e: ClientError| match e {
        ClientError::Remote(ce) => (ce.errno(), ce.step),
        other => panic!("{other:?}"),
    };
    let id = map.id();
    let k = 1u32.to_ne_bytes();
    let v = 6u64.to_ne_bytes();
    assert_eq!(
        remote(c.map_lookup(id, &k[..3]).unwrap_err()),
        (Errno::EFAULT, Step::Map),
        "3-byte key"
    );
    assert_eq!(
        remote(c.map_lookup(id, &[]).unwrap_err()),
        (Errno::EFAULT, Step::Map),
        "empty key"
    );
    assert_eq!(
        remote(c.map_update(id, &k[..2], &v, 0).unwrap_err()),
        (Errno::EFAULT, Step::Map),
        "2-byte key"
    );
    assert_eq!(
        remote(c.map_update(id, &k, &v[..7], 0).unwrap_err()),
        (Errno::EFAULT, Step::Map),
        "7-byte value"
    );
    for flags in [3u64, 4, 8, u64::MAX] {
        assert_eq!(
            remote(c.map_update(id, &k, &v, flags).unwrap_err()),
            (Errno::EINVAL, Step::Map),
            "flags {flags:#x}"
        );
    }
    assert_eq!(
        remote(c.map_delete(id, &k[..1]).unwrap_err()),
        (Errno::EFAULT, Step::Map),
        "1-byte key"
    );
    assert_eq!(
        remote(c.map_update(id + 1000, &k, &v, 0).unwrap_err()),
        (Errno::ENOENT, Step::Lookup),
        "no such map"
    );
    // Nothing changed, and the same connection still answers.
    assert_eq!(c.map_lookup(id, &k).unwrap(), 5u64.to_ne_bytes().to_vec());
}

#[test]
fn a_silent_client_is_timed_out_without_stalling_others() {
    let config = ServeConfig {
        timeout: Duration::from_millis(200),
        ..ServeConfig::default()
    };
    let (_rt, map, server) = setup(config);
    // Half a header, then silence.
    let mut stalled = UnixStream::connect(server.path()).unwrap();
    stalled.write_all(b"SOPS").unwrap();
    let mut c = ControlClient::connect(server.path()).unwrap();
    assert_eq!(c.list_maps().unwrap()[0].id, map.id());
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = frame::read_message::<Response>(&mut stalled, DEFAULT_MAX_FRAME);
    assert!(
        matches!(r, Ok(Response::Error(ref e)) if e.step == Step::Frame),
        "{r:?}"
    );
}

/// A client that sends a byte at a time, each well within the timeout, is still cut off
/// once its frame has taken longer than the timeout.
#[test]
fn a_trickling_client_is_cut_off_after_the_frame_timeout() {
    let config = ServeConfig {
        timeout: Duration::from_millis(400),
        ..ServeConfig::default()
    };
    let (_rt, _map, server) = setup(config);
    let frame = frame::encode(&Request::ListMaps, DEFAULT_MAX_FRAME).unwrap();
    let mut s = UnixStream::connect(server.path()).unwrap();
    let mut cut = false;
    // The whole frame, a byte every 100 ms: without a frame deadline it would be
    // served after about 1 s.
    for &b in &frame {
        if s.write_all(&[b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = frame::read_message::<Response>(&mut s, DEFAULT_MAX_FRAME);
    assert!(
        cut || matches!(r, Ok(Response::Error(ref e)) if e.step == Step::Frame && e.errno() == Errno::EPROTO),
        "{r:?}"
    );
}

#[test]
fn connections_over_the_limit_get_eagain() {
    let config = ServeConfig {
        max_connections: 1,
        ..ServeConfig::default()
    };
    let (_rt, _map, server) = setup(config);
    let mut first = ControlClient::connect(server.path()).unwrap();
    first.list_maps().unwrap();
    let mut second = ControlClient::connect(server.path()).unwrap();
    assert_eq!(second.list_maps().unwrap_err().errno(), Some(Errno::EAGAIN));
    drop(first);
    // The slot frees once the first connection's thread ends.
    let mut ok = false;
    for _ in 0..1000 {
        std::thread::sleep(Duration::from_millis(10));
        if let Ok(mut c) = ControlClient::connect(server.path())
            && c.list_maps().is_ok()
        {
            ok = true;
            break;
        }
    }
    assert!(ok);
}

fn hostile_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        // A valid header with a random length and a random (often short) body.
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(len, body)| {
            [
                &MAGIC[..],
                &VERSION.to_le_bytes(),
                &len.to_le_bytes(),
                &body,
            ]
            .concat()
        }),
        // A well-formed frame cut short.
        (0usize..40).prop_map(|cut| {
            let f = frame::encode(
                &Request::MapLookup {
                    id: 1,
                    key: vec![7; 30],
                },
                DEFAULT_MAX_FRAME,
            )
            .unwrap();
            f[..cut.min(f.len() - 1)].to_vec()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_bytes_never_stop_well_formed_clients(frames in proptest::collection::vec(hostile_frame(), 1..6)) {
        thread_local! {
            static SERVER: (Arc<Runtime>, MapHandle, ControlServer) = {
                let s = setup(ServeConfig { timeout: Duration::from_millis(300), ..ServeConfig::default() });
                s.0.map_update_elem(&s.1, Some(&1u32.to_ne_bytes()), &77u64.to_ne_bytes(), 0).unwrap();
                s
            };
        }
        SERVER.with(|(_rt, map, server)| {
            let mut good = ControlClient::connect(server.path()).unwrap();
            for bytes in &frames {
                // Whatever comes back must be a well-formed error frame (or nothing).
                if let Some(r) = raw_exchange(server.path(), bytes) {
                    prop_assert!(matches!(r, Response::Error(_) | Response::Maps(_) | Response::Progs(_) | Response::Links(_) | Response::StructOps(_) | Response::StructOpsTypes(_) | Response::Value(_) | Response::Entries(_) | Response::Done), "{r:?}");
                }
                prop_assert_eq!(good.map_lookup(map.id(), &1u32.to_ne_bytes()).unwrap(), 77u64.to_ne_bytes().to_vec());
            }
            Ok(())
        })?;
    }
}
