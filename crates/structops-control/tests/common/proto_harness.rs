//! The control protocol's request side with arbitrary bytes: shared by the
//! `control_proto` fuzz target (`fuzz/fuzz_targets/control_proto.rs`) and its bounded
//! twin (`tests/proto_fuzz.rs`).
//!
//! An input is a frame as a client would send it. The frame reader (with the server's
//! size limit) and the payload decoder must refuse it with a typed error, or yield a
//! request that the request handler answers — with a response or a typed error, never
//! a caught panic (`Step::Internal`). The handler runs against a TCP host with a map and
//! a program, so requests that name them get past the lookups, and registering a real
//! object succeeds; after each input whatever it registered is detached again and the
//! host's registry is as before.

use std::sync::Arc;

use structops::{MapCreateAttr, MapHandle, MapType, ProgHandle, ProgLoadAttr, ProgType};
use structops_control::frame::{self, FrameError};
use structops_control::{Controller, Request, Response, Step};
use structops_tcp::{HostConfig, TcpHost};

/// A frame limit small enough that the fuzzer reaches it.
pub const LIMIT: u32 = 1 << 20;

/// The host and the objects requests may name.
pub struct ProtoHarness {
    host: TcpHost,
    ctl: Controller,
    _map: MapHandle,
    _prog: ProgHandle,
    baseline: Vec<String>,
}

/// `bpf/reno.bpf.o`, compiled in: a register request's object.
pub const RENO: &[u8] = include_bytes!("../../../../bpf/reno.bpf.o");

impl ProtoHarness {
    /// Sets the host up.
    pub fn new() -> ProtoHarness {
        let host = TcpHost::new(HostConfig::default()).expect("host");
        let rt = host.runtime_arc().clone();
        let map = rt
            .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 16).name("counts"))
            .expect("map");
        let insns = [0xb7u8, 0, 0, 0, 7, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        let insns = insns
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                structops_isa::Insn::from_bytes(b)
            })
            .collect();
        let prog = rt
            .prog_load(&ProgLoadAttr::new(ProgType::SOCKET_FILTER, insns, "GPL").name("seven"))
            .expect("prog");
        let ctl = Controller::with_reply_limit(Arc::clone(&rt), None, LIMIT);
        let baseline = host.available();
        ProtoHarness {
            host,
            ctl,
            _map: map,
            _prog: prog,
            baseline,
        }
    }

    /// Runs one input: with its first byte odd, the rest is a payload behind a valid
    /// header; otherwise the rest is the frame itself. Panics (a finding) only when an
    /// invariant breaks.
    pub fn run(&self, input: &[u8]) -> Option<Response> {
        let (first, rest) = input.split_first()?;
        let framed;
        let bytes = if first & 1 == 1 {
            let len = u32::try_from(rest.len()).ok()?;
            framed = [
                &frame::MAGIC[..],
                &frame::VERSION.to_le_bytes(),
                &len.to_le_bytes(),
                rest,
            ]
            .concat();
            &framed[..]
        } else {
            rest
        };
        let req = match frame::read_message::<Request>(&mut &bytes[..], LIMIT) {
            Ok(r) => r,
            Err(FrameError::Encode(e)) => panic!("the reader encoded something: {e}"),
            Err(_) => return None,
        };
        Some(self.handle(req))
    }

    /// Runs one decoded request.
    pub fn handle(&self, req: Request) -> Response {
        let shown = format!("{req:?}");
        let resp = self.ctl.handle(req);
        if let Response::Error(e) = &resp {
            assert_ne!(e.step, Step::Internal, "a handler panicked on {shown}");
        }
        self.ctl.detach_all();
        assert_eq!(self.host.available(), self.baseline, "after {shown}");
        resp
    }
}
