//! Differential driving of a native congestion control and its BPF twin: two host
//! sockets, one running each, get the same environment changes (what a TCP stack does
//! between hook calls) and the same hook calls; after every call the return values, the
//! ACKs asked for and the socket state the congestion control may write must be equal.

use std::fmt::Debug;
use std::path::PathBuf;

use structops::Engine;
use structops_tcp::types::{ICSK_CA_PRIV_SIZE, TcpSock};
use structops_tcp::{LoadedCc, Socket, TcpHost, clock};

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u32) -> bool {
        self.below(100) < p
    }
}

/// Everything of a socket a congestion control may write (`bpf_tcp_ca`'s writable
/// fields) or the host derives from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    pub snd_cwnd_cnt: u32,
    pub snd_cwnd_stamp: u32,
    pub app_limited: u32,
    pub ecn_flags: u8,
    pub ack_pending: u8,
    pub ca_bits: u8,
    pub sk_pacing_rate: u64,
    pub sk_pacing_status: u32,
    pub tos: u8,
    pub ca_priv: [u64; ICSK_CA_PRIV_SIZE / 8],
}

impl Snapshot {
    pub fn of(tp: &TcpSock) -> Snapshot {
        Snapshot {
            snd_cwnd: tp.snd_cwnd,
            snd_ssthresh: tp.snd_ssthresh,
            snd_cwnd_cnt: tp.snd_cwnd_cnt,
            snd_cwnd_stamp: tp.snd_cwnd_stamp,
            app_limited: tp.app_limited,
            ecn_flags: tp.ecn_flags,
            ack_pending: tp.icsk().icsk_ack.pending,
            ca_bits: tp.icsk().icsk_ca_bits,
            sk_pacing_rate: tp.sk().sk_pacing_rate,
            sk_pacing_status: tp.sk().sk_pacing_status,
            tos: tp.inet_conn.icsk_inet.tos,
            ca_priv: tp.icsk().icsk_ca_priv,
        }
    }
}

/// The engines BPF code runs on.
pub fn engines() -> [Engine; 2] {
    [Engine::Interp, Engine::Jit]
}

/// The committed object `bpf/<name>.bpf.o`.
pub fn bpf_object(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bpf")
        .join(format!("{name}.bpf.o"));
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (committed; run make -C bpf)", p.display()))
}

/// A native socket and a BPF one, driven in lockstep.
pub struct Pair {
    pub native: Box<Socket>,
    pub bpf: Box<Socket>,
    /// What the failure messages name.
    pub context: String,
    /// Hook calls compared.
    pub calls: u64,
    /// ACKs the congestion control asked for (on each side).
    pub acks: u64,
    now_ns: u64,
    _cc: LoadedCc,
}

impl Pair {
    /// Loads `bpf/<object>.bpf.o` into `host` and makes a socket running `native` and one
    /// running the object's congestion control (`bpf_name`), both prepared by `setup`
    /// before the congestion control's `init`.
    pub fn new(
        host: &TcpHost,
        object: &str,
        native: &str,
        bpf_name: &str,
        setup: impl Fn(&mut TcpSock),
    ) -> Pair {
        host.enter();
        clock::set_now_ns(0);
        let bytes = bpf_object(object);
        let cc = host
            .load_object(&bytes, &format!("bpf/{object}.bpf.o"), None)
            .unwrap();
        assert_eq!(cc.name, bpf_name);
        let mut sockets = [host.socket(), host.socket()];
        for (s, name) in sockets.iter_mut().zip([native, bpf_name]) {
            setup(s);
            host.set_congestion_control(s, name).unwrap();
            assert_eq!(s.ca_name(), name);
        }
        let [native, bpf] = sockets;
        let mut pair = Pair {
            native,
            bpf,
            context: String::new(),
            calls: 0,
            acks: 0,
            now_ns: 0,
            _cc: cc,
        };
        pair.compare("init", &(), &());
        pair
    }

    /// Applies the same environment change to both sockets.
    pub fn env(&mut self, f: impl Fn(&mut TcpSock)) {
        f(&mut self.native);
        f(&mut self.bpf);
    }

    /// Advances the simulated clock by `ns`.
    pub fn advance(&mut self, ns: u64) {
        self.now_ns += ns;
        clock::set_now_ns(self.now_ns);
    }

    /// Calls the hook `f` on both sockets and compares the results.
    pub fn call<R: PartialEq + Debug>(&mut self, what: &str, f: impl Fn(&mut Socket) -> R) -> R {
        let a = f(&mut self.native);
        let b = f(&mut self.bpf);
        self.compare(what, &a, &b);
        a
    }

    fn compare<R: PartialEq + Debug>(&mut self, what: &str, a: &R, b: &R) {
        self.calls += 1;
        let acks_a: Vec<u32> = self.native.take_send_acks().collect();
        let acks_b: Vec<u32> = self.bpf.take_send_acks().collect();
        let (sa, sb) = (Snapshot::of(&self.native), Snapshot::of(&self.bpf));
        assert_eq!(
            a, b,
            "{}: {what}: return values (native, bpf)",
            self.context
        );
        assert_eq!(
            acks_a, acks_b,
            "{}: {what}: ACKs sent (native, bpf)",
            self.context
        );
        assert_eq!(
            sa, sb,
            "{}: {what}: socket state (native, bpf)",
            self.context
        );
        self.acks += acks_a.len() as u64;
    }
}
