//! Socket storage in the TCP host, as the kernel selftest `bpf_tcp_ca/dctcp` uses it:
//! user space stores a value for a socket in the corpus `bpf_dctcp`'s `sk_stg_map`
//! (key: the socket's descriptor), the program's `init` finds it with
//! `bpf_sk_storage_get`, copies it to `stg_result` and deletes it with
//! `bpf_sk_storage_delete`. Dropping a socket frees its values. Both engines.

use std::path::PathBuf;

use structops::loader::LoadedObject;
use structops::{BPF_NOEXIST, Engine, Errno};
use structops_btf::TypeKind;
use structops_tcp::{HostConfig, TcpHost};

fn corpus(name: &str) -> Option<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/build/corpus")
        .join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("skipped: {} ({e}); run conformance/build.sh", p.display());
            None
        }
    }
}

/// The global variable `var` of `obj`: its section's map and its offset there.
fn global(obj: &LoadedObject, var: &str) -> (structops::MapHandle, usize) {
    let btf = obj.object().btf().expect("object BTF");
    for t in btf.types() {
        let TypeKind::Datasec { vars, .. } = &t.kind else {
            continue;
        };
        let sec = btf.name(t.name_off).unwrap();
        for v in vars {
            let vt = btf.ty(v.ty).unwrap();
            if btf.name(vt.name_off).unwrap() == var {
                let (_, m) = obj
                    .maps()
                    .find(|(n, _)| n.ends_with(sec))
                    .unwrap_or_else(|| panic!("no map for {sec}"));
                return (m.clone(), v.offset as usize);
            }
        }
    }
    panic!("no global {var}");
}

fn read_i32(host: &TcpHost, obj: &LoadedObject, var: &str) -> i32 {
    let (m, off) = global(obj, var);
    let mut v = vec![0u8; m.value_size() as usize];
    host.runtime()
        .map_lookup_elem(&m, Some(&0u32.to_ne_bytes()), &mut v, 0)
        .unwrap();
    i32::from_ne_bytes(v[off..off + 4].try_into().unwrap())
}

#[test]
fn dctcp_init_takes_the_sockets_stored_value() {
    let Some(bytes) = corpus("bpf_dctcp.bpf.o") else {
        return;
    };
    for engine in [Engine::Interp, Engine::Jit] {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        let cc = host
            .load_object(&bytes, "bpf_dctcp.bpf.o", Some("dctcp"))
            .unwrap();
        assert_eq!(cc.name, "bpf_dctcp");
        let rt = host.runtime();
        let stg = cc.object().map("sk_stg_map").expect("sk_stg_map").clone();

        // A value for socket `a`, stored from user space (the key is a descriptor of
        // the socket), as the selftest does before connecting.
        let mut a = host.socket();
        let fd = rt.fd_install(a.storage().clone()).unwrap();
        let key = fd.to_ne_bytes();
        rt.map_update_elem(&stg, Some(&key), &0xeb9fi32.to_ne_bytes(), BPF_NOEXIST)
            .unwrap();
        assert_eq!(stg.storage_len(), 1);
        host.set_congestion_control(&mut a, "bpf_dctcp").unwrap();
        assert_eq!(
            read_i32(&host, cc.object(), "stg_result"),
            0xeb9f,
            "{engine:?}: init read the stored value"
        );
        let mut out = [0u8; 4];
        assert_eq!(
            rt.map_lookup_elem(&stg, Some(&key), &mut out, 0),
            Err(Errno::ENOENT),
            "{engine:?}: init deleted it"
        );
        assert_eq!(stg.storage_len(), 0);
        rt.fd_close(fd).unwrap();

        // Another socket without a value: init finds nothing, stg_result stays.
        let mut b = host.socket();
        let fd = rt.fd_install(b.storage().clone()).unwrap();
        host.set_congestion_control(&mut b, "bpf_dctcp").unwrap();
        assert_eq!(read_i32(&host, cc.object(), "stg_result"), 0xeb9f);

        // A value of a socket that is dropped goes with it (bpf_sk_storage_free).
        rt.map_update_elem(
            &stg,
            Some(&fd.to_ne_bytes()),
            &7i32.to_ne_bytes(),
            BPF_NOEXIST,
        )
        .unwrap();
        assert_eq!(stg.storage_len(), 1);
        rt.fd_close(fd).unwrap();
        drop(b);
        assert_eq!(stg.storage_len(), 0, "{engine:?}: freed with the socket");
        drop(a);
    }
}
