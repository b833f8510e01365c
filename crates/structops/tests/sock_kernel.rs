//! Kernel differential for what skb programs see of sockets and queue/stack maps at run
//! time: the same small programs run with `BPF_PROG_TEST_RUN` in the running kernel and
//! in [`structops::Runtime`] (verified, unchecked and checked), on IPv4, IPv6 and
//! non-IP frames, and their return values must be equal.
//!
//! - `__sk_buff->sk`: the kernel's skb test run gives every packet a dummy socket
//!   (`bpf_prog_test_run_skb`); every `struct bpf_sock` field a `sock_common` pointer may
//!   read, and through `bpf_sk_fullsock` the full-socket ones, must read the same.
//! - `bpf_tcp_sock`, `bpf_get_listener_sock` on it, and the socket lookups (which find
//!   no socket for an all-zero tuple) must give the same NULL or non-NULL answers.
//! - `bpf_map_push_elem` / `pop` / `peek` on queues and stacks: the return codes and
//!   values a program sees, and what the syscall side then peeks.
//!
//! Skips with a printed reason without root or BPF.

#[path = "common/kernel.rs"]
#[expect(dead_code, reason = "shared bpf(2) helpers, not all used here")]
mod kernel;

use structops::{
    Errno, MapCreateAttr, MapType, ProgLoadAttr, ProgType, RunMode, Runtime, RuntimeConfig, TestRun,
};
use structops_isa::assemble;

use kernel::OwnedFds;

/// Returned when `__sk_buff->sk` is NULL.
const NO_SK: u32 = 0xdead;
/// Returned when `bpf_sk_fullsock` gives NULL.
const NOT_FULL: u32 = 0xbeef;

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ipv4() -> Vec<u8> {
    let mut h = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 192, 168, 7, 9,
    ];
    h.extend_from_slice(&[0x12, 0x34, 0x00, 0x50]);
    h.extend_from_slice(&[0; 16]);
    frame(0x0800, &h)
}

fn ipv6() -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    h.extend((1..=16).map(|i| 0x20 + i as u8));
    h.extend((1..=16).map(|i| 0xf0 ^ i as u8));
    h.extend_from_slice(&[0x00, 0x35, 0x00, 0x35, 0, 8, 0, 0]);
    frame(0x86dd, &h)
}

fn arp() -> Vec<u8> {
    frame(0x0806, &[1u8; 28])
}

/// `r0 = *(u32 *)(sk + off)` through `__sk_buff->sk`.
fn sock_common_field(off: u32, size: &str) -> String {
    format!(
        "r1 = *(u64 *)(r1 +168)\n\
         if r1 == 0 goto null\n\
         r0 = *({size} *)(r1 +{off})\n\
         exit\n\
         null:\n\
         r0 = {NO_SK}\n\
         exit\n"
    )
}

/// A full-socket field through `bpf_sk_fullsock(__sk_buff->sk)`.
fn full_field(off: u32) -> String {
    format!(
        "r1 = *(u64 *)(r1 +168)\n\
         if r1 == 0 goto null\n\
         call bpf_sk_fullsock\n\
         if r0 == 0 goto notfull\n\
         r0 = *(u32 *)(r0 +{off})\n\
         exit\n\
         notfull:\n\
         r0 = {NOT_FULL}\n\
         exit\n\
         null:\n\
         r0 = {NO_SK}\n\
         exit\n"
    )
}

/// 1 if `helper(__sk_buff->sk)` is NULL, 2 if not.
fn sock_cast(helper: &str) -> String {
    format!(
        "r1 = *(u64 *)(r1 +168)\n\
         if r1 == 0 goto null\n\
         call {helper}\n\
         if r0 == 0 goto isnull\n\
         r0 = 2\n\
         exit\n\
         isnull:\n\
         r0 = 1\n\
         exit\n\
         null:\n\
         r0 = {NO_SK}\n\
         exit\n"
    )
}

/// 1 if the lookup of an all-zero IPv4 tuple finds nothing, 2 (after releasing) if it
/// finds a socket.
fn lookup(helper: &str) -> String {
    format!(
        "*(u64 *)(r10 -8) = 0\n\
         *(u64 *)(r10 -16) = 0\n\
         r2 = r10\n\
         r2 += -16\n\
         r3 = 12\n\
         r4 = 0\n\
         r5 = 0\n\
         call {helper}\n\
         if r0 == 0 goto none\n\
         r1 = r0\n\
         call bpf_sk_release\n\
         r0 = 2\n\
         exit\n\
         none:\n\
         r0 = 1\n\
         exit\n"
    )
}

/// Pushes 11, 22, 33 (the third onto a full two-entry map, with `flags`), pops one and
/// peeks the next: `r0 = push3_rc * 1_000_000 + popped * 1000 + peeked` (pop or peek
/// results of an empty map add 500 / 5).
fn queue_prog(fd: i32, flags: u32) -> String {
    let push = |v: u32, f: u32| {
        format!(
            "r1 = {v}\n\
             *(u64 *)(r10 -8) = r1\n\
             r2 = r10\n\
             r2 += -8\n\
             r3 = {f}\n\
             r1 = map[id:{fd}]\n\
             call bpf_map_push_elem\n"
        )
    };
    format!(
        "{}{}{}\
         r6 = r0\n\
         r6 &= 0xff\n\
         r6 *= 1000000\n\
         r2 = r10\n\
         r2 += -16\n\
         r1 = map[id:{fd}]\n\
         call bpf_map_pop_elem\n\
         r7 = *(u64 *)(r10 -16)\n\
         if r0 == 0 goto popped\n\
         r7 += 500\n\
         popped:\n\
         r7 *= 1000\n\
         r2 = r10\n\
         r2 += -24\n\
         r1 = map[id:{fd}]\n\
         call bpf_map_peek_elem\n\
         r8 = *(u64 *)(r10 -24)\n\
         if r0 == 0 goto peeked\n\
         r8 += 5\n\
         peeked:\n\
         r0 = r6\n\
         r0 += r7\n\
         r0 += r8\n\
         exit\n",
        push(11, 0),
        push(22, 0),
        push(33, flags)
    )
}

/// One program run in both: `(label, kernel, ours)` results.
type Runs = Vec<(String, Result<u32, Errno>, Result<u32, Errno>)>;

fn run_both(
    rt: &Runtime,
    fds: &mut OwnedFds,
    ty: ProgType,
    label: &str,
    text: &str,
    kernel_text: Option<&str>,
    runs: &mut Runs,
) {
    let insns = assemble(text)
        .unwrap_or_else(|e| panic!("{label}: {e}"))
        .encode();
    let kinsns = kernel_text.map_or_else(
        || insns.clone(),
        |t| {
            assemble(t)
                .unwrap_or_else(|e| panic!("{label}: {e}"))
                .encode()
        },
    );
    let kattr = ProgLoadAttr::new(ty, kinsns, "GPL");
    let kfd = kernel::prog_load(&kattr, 1)
        .unwrap_or_else(|(e, log)| panic!("{label}: kernel refused: {e:?}\n{log}"));
    fds.own(kfd);
    let attr = ProgLoadAttr::new(ty, insns, "GPL");
    let mut log = String::new();
    let h = rt
        .prog_load_with_log(&attr, &mut log)
        .unwrap_or_else(|e| panic!("{label}: runtime refused: {e:?}\n{log}"));
    for (fname, f) in [("ipv4", ipv4()), ("ipv6", ipv6()), ("arp", arp())] {
        // Kernel and ours in lock-step, once per mode, so that programs with map
        // state see the same history on both sides.
        for mode in [RunMode::Unchecked, RunMode::Checked] {
            let mut k = TestRun::with_data(&f);
            let kr = kernel::prog_test_run(kfd, &mut k).map(|()| k.retval);
            let mut t = TestRun::with_data(&f);
            t.mode = mode;
            let or = rt.prog_test_run(&h, &mut t).map(|()| t.retval);
            runs.push((format!("{label} on {fname} ({mode:?})"), kr, or));
        }
    }
}

#[test]
fn sockets_and_queues_match_the_kernel() {
    if let Some(why) = kernel::unavailable() {
        println!("SKIP sock_kernel: {why}");
        return;
    }
    let rt = Runtime::new(RuntimeConfig::default());
    let mut fds = OwnedFds::default();
    let mut runs: Runs = Vec::new();
    let tc = ProgType::SCHED_CLS;
    // sock_common fields: bound_dev_if, family, addresses (also narrow), ports, state,
    // rx_queue_mapping.
    let common: &[(u32, &str)] = &[
        (0, "u32"),
        (4, "u32"),
        (24, "u32"),
        (25, "u8"),
        (26, "u16"),
        (28, "u32"),
        (32, "u32"),
        (36, "u32"),
        (40, "u32"),
        (44, "u32"),
        (48, "u32"),
        (48, "u16"),
        (52, "u32"),
        (56, "u32"),
        (60, "u32"),
        (64, "u32"),
        (68, "u32"),
        (72, "u32"),
        (76, "u32"),
    ];
    for &(off, size) in common {
        let text = sock_common_field(off, size);
        for ty in [tc, ProgType::SOCKET_FILTER] {
            run_both(
                &rt,
                &mut fds,
                ty,
                &format!("{ty:?} sk+{off} {size}"),
                &text,
                None,
                &mut runs,
            );
        }
    }
    for off in [8u32, 12, 16, 20] {
        run_both(
            &rt,
            &mut fds,
            tc,
            &format!("fullsock+{off}"),
            &full_field(off),
            None,
            &mut runs,
        );
    }
    for helper in ["bpf_tcp_sock", "bpf_get_listener_sock", "bpf_sk_fullsock"] {
        run_both(
            &rt,
            &mut fds,
            tc,
            helper,
            &sock_cast(helper),
            None,
            &mut runs,
        );
    }
    for helper in [
        "bpf_sk_lookup_tcp",
        "bpf_sk_lookup_udp",
        "bpf_skc_lookup_tcp",
    ] {
        run_both(&rt, &mut fds, tc, helper, &lookup(helper), None, &mut runs);
    }
    // Queue and stack programs: each run starts on the map as the previous left it, in
    // both (one map per side, the same sequence of runs).
    let mut queue_maps = Vec::new();
    for (ty, flags) in [
        (MapType::Queue, 0u32),
        (MapType::Queue, 2),
        (MapType::Stack, 0),
        (MapType::Stack, 2),
    ] {
        let attr = MapCreateAttr::new(ty, 0, 8, 2);
        let kfd = fds.own(kernel::map_create(&attr).expect("kernel map_create"));
        let h = rt.map_create(&attr).expect("runtime map_create");
        let ofd = rt.fd_install(h.clone()).expect("fd_install") as i32;
        run_both(
            &rt,
            &mut fds,
            tc,
            &format!("{ty:?} push flags {flags}"),
            &queue_prog(ofd, flags),
            Some(&queue_prog(kfd, flags)),
            &mut runs,
        );
        queue_maps.push((format!("{ty:?} flags {flags}"), kfd, h));
    }
    let mut bad = Vec::new();
    for (label, k, o) in &runs {
        if k != o {
            bad.push(format!("{label}: kernel {k:?}, ours {o:?}"));
        }
    }
    // What is left in the maps: peek through the syscall side.
    for (label, kfd, h) in &queue_maps {
        let mut kv = [0u8; 8];
        let mut ov = [0u8; 8];
        let kr = kernel::lookup(*kfd, None, &mut kv, 0);
        let or = rt.map_lookup_elem(h, None, &mut ov, 0);
        if (kr, kv) != (or, ov) {
            bad.push(format!(
                "{label}: syscall peek kernel {kr:?} {kv:?}, ours {or:?} {ov:?}"
            ));
        }
    }
    println!(
        "sock/queue run differential: {} runs, {} differ",
        runs.len(),
        bad.len()
    );
    // The socket is really there: family AF_INET on the IPv4 frame, and
    // bpf_sk_fullsock gives it back.
    let family_v4: Vec<_> = runs
        .iter()
        .filter(|(l, ..)| l.contains("sk+4 u32 on ipv4"))
        .collect();
    assert!(!family_v4.is_empty());
    assert!(family_v4.iter().all(|(_, k, o)| *k == Ok(2) && *o == Ok(2)));
    assert!(
        runs.iter()
            .any(|(l, k, _)| l.starts_with("bpf_sk_fullsock") && *k == Ok(2)),
        "bpf_sk_fullsock of the dummy socket is not NULL"
    );
    assert!(bad.is_empty(), "differences:\n{}", bad.join("\n"));
}
