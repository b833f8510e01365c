//! **kernel**: XDP programs through the kernel's `BPF_PROG_TEST_RUN` and through this
//! runtime's `prog_test_run`, both with `repeat`, on the same packet; each side reports
//! the mean ns per run (the kernel's `duration`).
//!
//! Programs: `xdp_count` of the project's fixture `bpf/maps.bpf.o` (a map update per
//! packet) and, when the conformance corpus is built (`conformance/build/xdp`),
//! `xdp_dummy` (an empty program: `return XDP_PASS`, whose time is the test-run
//! overhead of each side, reported separately), `xdp_ingress_v6`
//! (test_parse_tcp_hdr_opt, a TCP option parser) and `balancer_ingress` of
//! test_xdp_noinline (the selftests' L4 load balancer).
//!
//! Kernel side, without libbpf: each object is parsed and relocated by
//! `structops-obj`, its maps created without BTF (global data filled, `.rodata`
//! frozen) and the program loaded with `BPF_PROG_LOAD`; every descriptor is closed when
//! the program's figures are taken. Our side: the same object through
//! [`structops::loader::ObjectLoader`] into a runtime (verified, on the JIT).
//!
//! Target: our per-run time at most the kernel's. Without root or kernel BPF the
//! benchmark skips with the reason; a program either side cannot load is skipped with
//! its reason.

use std::cell::RefCell;

use structops::loader::{LoadOptions, ObjectLoader};
use structops::{ProgLoadAttr, Runtime, RuntimeConfig, TestRun};
use structops_obj::{MapKind, Object, ParseOptions};

use crate::sys::{self, Fd};
use crate::{Report, Row, Settings, Target};

/// `bpf/maps.bpf.o`.
const MAPS_OBJECT: &[u8] = include_bytes!("../../../bpf/maps.bpf.o");

/// `BPF_MAP_TYPE_STRUCT_OPS`.
const MAP_TYPE_STRUCT_OPS: u32 = 26;

/// Name of the empty program, whose time is the overhead of a test run.
pub const EMPTY: &str = "xdp_dummy_prog";

/// One program to compare: its object's bytes and path, and its name.
#[derive(Debug)]
pub struct Subject {
    /// Object label (path relative to the repository).
    pub object: String,
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// The program.
    pub prog: &'static str,
}

/// The programs of the benchmark that are present on this machine, and why the others
/// are not.
pub fn subjects() -> (Vec<Subject>, Vec<String>) {
    let mut out = vec![Subject {
        object: "bpf/maps.bpf.o".into(),
        bytes: MAPS_OBJECT.to_vec(),
        prog: "xdp_count",
    }];
    let mut missing = Vec::new();
    let dir = crate::conformance_build().join("xdp");
    for (file, prog) in [
        ("xdp_dummy.bpf.o", EMPTY),
        ("test_parse_tcp_hdr_opt.bpf.o", "xdp_ingress_v6"),
        ("test_xdp_noinline.bpf.o", "balancer_ingress_v6"),
    ] {
        let path = dir.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => out.push(Subject {
                object: format!("conformance/build/xdp/{file}"),
                bytes,
                prog,
            }),
            Err(e) => missing.push(format!(
                "{file}: {} ({e}; run conformance/build.sh)",
                path.display()
            )),
        }
    }
    (out, missing)
}

/// The packet every program runs on: Ethernet, IPv6, TCP with options (MSS, SACK
/// permitted, timestamps, window scale) and a short payload.
pub fn packet() -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&40000u16.to_be_bytes());
    tcp.extend_from_slice(&80u16.to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    let opts: [u8; 20] = [
        2, 4, 0x05, 0xb4, // MSS 1460
        4, 2, // SACK permitted
        8, 10, 0, 0, 0, 1, 0, 0, 0, 0, // timestamps
        1, 3, 3, 7, // NOP, window scale 7
    ];
    let doff = ((20 + opts.len()) / 4) as u8;
    tcp.push(doff << 4);
    tcp.push(0x02); // SYN
    tcp.extend_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    tcp.extend_from_slice(&opts);
    tcp.extend_from_slice(b"structops bench payload.");
    let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x86, 0xdd];
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    p.push(6); // TCP
    p.push(64);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&tcp);
    p
}

/// A program loaded into the kernel, with every descriptor it needs.
struct KernelProg {
    prog: Fd,
    _maps: Vec<Fd>,
    _btf: Option<Fd>,
}

fn kernel_load(s: &Subject) -> Result<KernelProg, String> {
    let mut obj = Object::parse_with(&s.bytes, &ParseOptions::for_path(&s.object))
        .map_err(|e| format!("parse: {e}"))?;
    for p in obj.programs_mut() {
        if !p.is_subprog() {
            let on = p.name() == s.prog;
            p.set_autoload(on);
        }
    }
    // As libbpf, an object whose BTF the kernel refuses loads without it.
    let btf = obj.btf().and_then(|b| sys::btf_load(&b.encode()).ok());
    // Only the maps the program references are created (on first reference, as the
    // relocation asks for them), so objects with map types a plain BPF_MAP_CREATE
    // cannot make (maps of maps) still load their other programs.
    let maps: RefCell<Vec<(usize, Fd)>> = RefCell::new(Vec::new());
    let failure: RefCell<Option<String>> = RefCell::new(None);
    let fd_of = |i: usize| -> i32 {
        if let Some((_, fd)) = maps.borrow().iter().find(|(j, _)| *j == i) {
            return fd.raw();
        }
        match create_map(&obj, i) {
            Ok(Some(fd)) => {
                let raw = fd.raw();
                maps.borrow_mut().push((i, fd));
                raw
            }
            Ok(None) => -1,
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                -1
            }
        }
    };
    let linked = obj.relocate(&fd_of);
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    let linked = linked.map_err(|e| format!("relocate: {e}"))?;
    let l = linked
        .iter()
        .find(|l| l.name == s.prog)
        .ok_or_else(|| format!("no program {}", s.prog))?;
    let p = &obj.programs()[l.program];
    let mut attr = ProgLoadAttr::new(p.prog_type(), l.insns.clone(), obj.license())
        .expected_attach_type(p.expected_attach_type());
    if let Some(fd) = &btf {
        if let Some(fi) = &l.func_info {
            attr = attr.func_info(fd.raw() as u32, fi);
        }
        if let Some(li) = &l.line_info {
            attr = attr.line_info(fd.raw() as u32, li);
        }
    }
    let prog = sys::prog_load(&attr)?;
    Ok(KernelProg {
        prog,
        _maps: maps.into_inner().into_iter().map(|(_, fd)| fd).collect(),
        _btf: btf,
    })
}

/// Creates map `i` of `obj` in the kernel without BTF (global data filled, `.rodata`
/// frozen); `None` for maps that are not created (struct_ops, autocreate off).
fn create_map(obj: &Object, i: usize) -> Result<Option<Fd>, String> {
    let Some(m) = obj.maps().get(i) else {
        return Ok(None);
    };
    if !m.autocreate() || m.map_type().0 == MAP_TYPE_STRUCT_OPS {
        return Ok(None);
    }
    let create = |m: &structops_obj::Map, inner: Option<&Fd>| {
        sys::map_create(
            m.map_type().0,
            m.key_size(),
            m.value_size(),
            m.max_entries(),
            m.map_flags(),
            inner,
        )
        .map_err(|e| format!("map '{}': BPF_MAP_CREATE: {e}", m.name()))
    };
    // The inner map's template is needed only while the outer map is created.
    let inner = m.inner_map().map(|i| create(i, None)).transpose()?;
    let fd = create(m, inner.as_ref())?;
    if m.kind().is_internal() {
        let mut value = m.initial_value().to_vec();
        value.resize(m.value_size() as usize, 0);
        sys::map_update(&fd, &0u32.to_ne_bytes(), &value)
            .map_err(|e| format!("map '{}': global data: {e}", m.name()))?;
        if matches!(m.kind(), MapKind::Rodata | MapKind::Kconfig) {
            sys::map_freeze(&fd).map_err(|e| format!("map '{}': freeze: {e}", m.name()))?;
        }
    }
    Ok(Some(fd))
}

/// The fastest of `runs` test runs of `repeat` iterations: `(retval, ns per run)`.
fn best_of(
    runs: u32,
    mut run: impl FnMut() -> Result<(u32, u32), String>,
) -> Result<(u32, u32), String> {
    let mut best: Option<(u32, u32)> = None;
    for _ in 0..runs.max(1) {
        let (ret, ns) = run()?;
        if best.is_none_or(|(_, b)| ns < b) {
            best = Some((ret, ns));
        }
    }
    best.ok_or_else(|| "no run".to_string())
}

/// Per-run ns of `s` on both sides: `(ours, kernel)`.
pub fn compare(s: &Subject, settings: &Settings) -> Result<(f64, f64), String> {
    let data = packet();
    let repeat = settings.test_run_repeat.max(1);
    let runs = 5;
    let k = kernel_load(s).map_err(|e| format!("kernel: {e}"))?;
    let (kret, kns) = best_of(runs, || {
        sys::prog_test_run(&k.prog, &data, repeat)
            .map_err(|e| format!("kernel: BPF_PROG_TEST_RUN: {e}"))
    })?;
    drop(k);

    let rt = Runtime::new(RuntimeConfig::default());
    let mut loader = ObjectLoader::open(&s.bytes, &s.object).map_err(|e| format!("ours: {e}"))?;
    loader.select_programs(&[s.prog]);
    let obj = loader
        .load(&rt, &LoadOptions::default())
        .map_err(|e| format!("ours: {e}"))?;
    let prog = obj
        .prog(s.prog)
        .ok_or_else(|| format!("ours: no program {}", s.prog))?;
    if prog.jited().is_none() {
        return Err("ours: the program is not on the JIT".into());
    }
    let (oret, ons) = best_of(runs, || {
        let mut t = TestRun {
            data_in: data.clone(),
            repeat,
            ..TestRun::default()
        };
        rt.prog_test_run(prog, &mut t)
            .map_err(|e| format!("ours: prog_test_run: {e}"))?;
        Ok((t.retval, t.duration))
    })?;
    if oret != kret {
        return Err(format!("retval differs: ours {oret}, kernel {kret}"));
    }
    Ok((f64::from(ons), f64::from(kns)))
}

/// The quick mode.
pub fn run(settings: &Settings) -> Report {
    let mut report = Report::new("kernel");
    if let Some(why) = sys::unavailable() {
        report
            .skipped
            .push(format!("kernel BPF unavailable: {why}"));
        return report;
    }
    let (subjects, missing) = subjects();
    report.skipped.extend(missing);
    const KERNEL: &str = "kernel BPF_PROG_TEST_RUN";
    let mut empty = None;
    let mut results = Vec::new();
    for s in &subjects {
        match compare(s, settings) {
            Ok((ours, kernel)) => {
                if s.prog == EMPTY {
                    empty = Some((ours, kernel));
                }
                results.push((s, ours, kernel));
            }
            Err(e) => report
                .skipped
                .push(format!("{} ({}): {e}", s.prog, s.object)),
        }
    }
    for &(s, ours, kernel) in &results {
        let name = if s.prog == EMPTY {
            format!("empty program overhead: {} ({})", s.prog, s.object)
        } else {
            format!("{} ({})", s.prog, s.object)
        };
        report.rows.push(Row::judged(
            name,
            ours,
            "ns/run",
            KERNEL,
            kernel,
            Target::AtMostTimes(1.0),
        ));
    }
    if let Some((oe, ke)) = empty {
        for &(s, ours, kernel) in &results {
            if s.prog != EMPTY {
                report.rows.push(Row::beside(
                    format!("{} net of the empty program", s.prog),
                    ours - oe,
                    "ns/run",
                    "kernel, net of its empty program",
                    kernel - ke,
                ));
            }
        }
    }
    report
}
