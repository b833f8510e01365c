//! The TCP host with kernel selftest objects: registration rules, sockets calling
//! programs, `bpf_setsockopt(TCP_CONGESTION)`, and hot swap through a link update.

use std::path::PathBuf;

use structops::Engine;
use structops_tcp::types::TcpCaState;
use structops_tcp::{HostConfig, HostError, TcpHost};

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

fn engines() -> [Engine; 2] {
    [Engine::Interp, Engine::Jit]
}

/// `.bss` counter `name` of a loaded object.
fn bss_u32(host: &TcpHost, obj: &structops::loader::LoadedObject, off: usize) -> u32 {
    let (_, m) = obj
        .maps()
        .find(|(n, _)| n.ends_with(".bss"))
        .expect("a .bss map");
    let mut v = vec![0u8; m.value_size() as usize];
    host.runtime()
        .map_lookup_elem(m, Some(&0u32.to_ne_bytes()), &mut v, 0)
        .unwrap();
    u32::from_ne_bytes(v[off..off + 4].try_into().unwrap())
}

#[test]
fn registration_sockets_and_hot_swap_with_tcp_ca_update() {
    let Some(bytes) = corpus("tcp_ca_update.bpf.o") else {
        return;
    };
    for engine in engines() {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        let mut cc = host
            .load_object(&bytes, "tcp_ca_update.bpf.o", Some("ca_update_1"))
            .unwrap();
        assert_eq!(cc.name, "tcp_ca_update");
        assert!(host.available().contains(&"tcp_ca_update".to_string()));
        // The same name again: EEXIST, as tcp_register_congestion_control.
        match host.load_object(&bytes, "tcp_ca_update.bpf.o", Some("ca_update_2")) {
            Err(HostError::Load { source, .. }) => {
                assert!(format!("{source}").contains("EEXIST"), "{source}")
            }
            other => panic!("expected EEXIST, got {other:?}"),
        }
        // ca_wrong has no init but is complete: it registers.
        let wrong = host
            .load_object(&bytes, "tcp_ca_update.bpf.o", Some("ca_wrong"))
            .unwrap();
        assert_eq!(wrong.name, "tcp_ca_wrong");

        let mut s = host.socket();
        s.snd_cwnd = 17;
        s.snd_ssthresh = 9;
        host.set_congestion_control(&mut s, "tcp_ca_update")
            .unwrap();
        assert_eq!(s.ca_name(), "tcp_ca_update");
        assert!(s.icsk().ca_initialized());
        assert_eq!(bss_u32(&host, cc.object(), 0), 1, "ca1_cnt after init");
        assert_eq!(s.ca_ssthresh(), 9, "ssthresh returns snd_ssthresh");
        assert_eq!(s.ca_undo_cwnd(), 17, "undo_cwnd returns snd_cwnd");
        assert!(s.has_cong_control());
        s.ca_set_state(TcpCaState::Recovery);
        assert_eq!(s.ca_state(), TcpCaState::Recovery as u8);

        // Hot swap: the link moves to ca_update_2 (same name); the socket re-inits.
        host.update(&mut cc, &bytes, "tcp_ca_update.bpf.o", Some("ca_update_2"))
            .unwrap();
        assert_eq!(bss_u32(&host, cc.current_object(), 4), 0, "ca2_cnt before");
        assert_eq!(s.ca_ssthresh(), 9);
        assert_eq!(
            bss_u32(&host, cc.current_object(), 4),
            1,
            "the socket re-initialised on the new table at its next hook call"
        );
        assert_eq!(bss_u32(&host, cc.object(), 0), 1, "the old init ran once");
        assert_eq!(s.ca_name(), "tcp_ca_update");
        // Moving the link to a table of another name is EINVAL.
        match host.update(&mut cc, &bytes, "tcp_ca_update.bpf.o", Some("ca_wrong")) {
            Err(HostError::Load { source, .. }) => {
                assert!(format!("{source}").contains("EINVAL"), "{source}")
            }
            other => panic!("expected EINVAL, got {other:?}"),
        }
        drop(s);
        drop(wrong);
        drop(cc);
        assert!(!host.available().contains(&"tcp_ca_update".to_string()));
    }
}

/// Kernel selftest CC programs that call the CUBIC kfuncs load, attach and run.
#[test]
fn bpf_cc_cubic_calls_the_cubic_kfuncs() {
    let Some(bytes) = corpus("bpf_cc_cubic.bpf.o") else {
        return;
    };
    for engine in engines() {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        host.enter();
        let cc = host
            .load_object(&bytes, "bpf_cc_cubic.bpf.o", None)
            .unwrap();
        assert_eq!(cc.name, "bpf_cc_cubic");
        let mut bpf = host.socket();
        let mut native = host.socket();
        for (s, name) in [(&mut bpf, "bpf_cc_cubic"), (&mut native, "cubic")] {
            s.snd_cwnd = 10;
            s.mss_cache = 1448;
            s.max_packets_out = 10;
            host.set_congestion_control(s, name).unwrap();
        }
        // cong_avoid through cong_control: the BPF program calls cubictcp_cong_avoid.
        let rs = structops_tcp::RateSample {
            acked_sacked: 2,
            ..Default::default()
        };
        for i in 0..50u32 {
            structops_tcp::clock::set_now_ns(u64::from(i) * 1_000_000);
            bpf.ca_cong_control(i, structops_tcp::types::FLAG_DATA_ACKED, &rs);
            native.ca_cong_avoid(i, 2);
        }
        assert_eq!(bpf.snd_cwnd, native.snd_cwnd, "{engine:?}");
        assert!(bpf.snd_cwnd > 10, "slow start grew cwnd: {}", bpf.snd_cwnd);
        assert_eq!(bpf.ca_ssthresh(), native.ca_ssthresh());
    }
}

/// Every kfunc the kernel exports for congestion controls has an implementation here.
#[test]
fn every_kernel_kfunc_is_implemented() {
    let mut ours = structops_tcp::kfuncs::implemented();
    ours.sort_unstable();
    let mut kernel = structops::struct_ops::tcp_ca::KFUNCS.to_vec();
    kernel.sort_unstable();
    assert_eq!(ours, kernel);
}

/// The corpus tcp_ca_kfunc (every CUBIC, DCTCP and BBR kfunc) loads, attaches and runs.
#[test]
fn tcp_ca_kfunc_calls_every_kfunc() {
    let Some(bytes) = corpus("tcp_ca_kfunc.bpf.o") else {
        return;
    };
    for engine in engines() {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        host.enter();
        let _cc = host
            .load_object(&bytes, "tcp_ca_kfunc.bpf.o", None)
            .unwrap();
        let mut s = host.socket();
        s.snd_cwnd = 10;
        s.mss_cache = 1448;
        s.srtt_us = 20_000 << 3;
        // An ECN connection: without, dctcp_init switches the socket to dctcp-reno, as
        // in the kernel (tested below).
        s.ecn_flags |= structops_tcp::types::TCP_ECN_OK;
        host.set_congestion_control(&mut s, "tcp_ca_kfunc").unwrap();
        let rs = structops_tcp::RateSample {
            acked_sacked: 2,
            delivered: 2,
            interval_us: 20_000,
            rtt_us: 20_000,
            ..Default::default()
        };
        s.ca_cong_control(1, structops_tcp::types::FLAG_DATA_ACKED, &rs);
        s.ca_in_ack_event(0);
        assert_eq!(s.ca_sndbuf_expand(), Some(3), "bbr_sndbuf_expand");
        assert!(s.ca_min_tso_segs().is_some_and(|n| n >= 1));
        assert!(s.ca_ssthresh() >= 2);
        s.ca_set_state(structops_tcp::TcpCaState::Loss);
        assert!(
            s.sk().sk_pacing_rate > 0,
            "bbr_init and bbr_main set a pacing rate"
        );
        assert_eq!(s.ca_name(), "tcp_ca_kfunc");
        // Without ECN, the dctcp_init kfunc falls back to dctcp-reno by writing
        // icsk_ca_ops, as the kernel's does; the socket follows.
        let mut plain = host.socket();
        host.set_congestion_control(&mut plain, "tcp_ca_kfunc")
            .unwrap();
        assert_eq!(plain.ca_name(), "dctcp-reno");
        assert_eq!(plain.ca_sndbuf_expand(), None);
    }
}
