//! The `loops.txt` family of the runtime's verifier suite
//! (`crates/structops/tests/verifier_cases/loops.txt`), driven straight
//! against [`verify`] with a test-local environment: every case must get
//! the kernel-checked verdict, errno and message written in the file. The
//! open-coded iterator cases call the `bpf_iter_num_*` kfuncs of a small
//! host BTF declaring them as the kernel does.

use std::collections::BTreeMap;

use structops_btf::{Btf, BtfBuilder, INT_SIGNED, Linkage};
use structops_isa::{Insn, assemble};

use crate::env::{
    KfuncDesc, KfuncFlags, LogOptions, MapInfo, MapRef, Privileges, ProgInfo, VerifierEnv,
};
use crate::error::{E2BIG, EACCES, EINVAL};
use crate::proto::{Arg, ArgType, HelperProto, Ret, TypeFlags};
use crate::tests::{Mock, mock_helper};
use crate::verify;

/// An XDP-like environment with the case's maps, `bpf_loop` and the
/// number iterator's kfuncs.
struct Env {
    mock: Mock,
    maps: BTreeMap<i32, MapInfo>,
    btf: Btf,
    /// `(name, FUNC id, flags)` of the kfuncs.
    kfuncs: Vec<(&'static str, u32, KfuncFlags)>,
}

/// ```c
/// struct bpf_iter_num { __u64 __opaque[1]; };
/// int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end);  // ITER_NEW
/// int *bpf_iter_num_next(struct bpf_iter_num *it);        // ITER_NEXT | RET_NULL
/// void bpf_iter_num_destroy(struct bpf_iter_num *it);     // ITER_DESTROY
/// ```
fn iter_num_btf() -> (Btf, Vec<(&'static str, u32, KfuncFlags)>) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let u64t = b.add_int("unsigned long long", 8, 0);
    let it = b.add_struct("bpf_iter_num", 8, &[("__opaque", u64t, 0)]);
    let it_ptr = b.add_ptr(it);
    let int_ptr = b.add_ptr(int);
    let new = b.add_func_proto(int, &[("it", it_ptr), ("start", int), ("end", int)]);
    let next = b.add_func_proto(int_ptr, &[("it", it_ptr)]);
    let destroy = b.add_func_proto(0, &[("it", it_ptr)]);
    let kfuncs = vec![
        (
            "bpf_iter_num_new",
            b.add_func("bpf_iter_num_new", new, Linkage::Global),
            KfuncFlags::ITER_NEW,
        ),
        (
            "bpf_iter_num_next",
            b.add_func("bpf_iter_num_next", next, Linkage::Global),
            KfuncFlags::ITER_NEXT.with(KfuncFlags::RET_NULL),
        ),
        (
            "bpf_iter_num_destroy",
            b.add_func("bpf_iter_num_destroy", destroy, Linkage::Global),
            KfuncFlags::ITER_DESTROY,
        ),
    ];
    (b.build(), kfuncs)
}

impl VerifierEnv for Env {
    fn host_btf(&self) -> Option<&Btf> {
        Some(&self.btf)
    }

    fn kfunc(&self, btf_id: u32) -> Option<KfuncDesc> {
        self.kfuncs
            .iter()
            .find(|k| k.1 == btf_id)
            .map(|&(name, btf_id, flags)| KfuncDesc {
                name: name.to_owned(),
                btf_id,
                flags: flags.with(KfuncFlags::TRUSTED_ARGS),
            })
    }

    fn map(&self, m: MapRef) -> Option<MapInfo> {
        match m {
            MapRef::Fd(fd) => self.maps.get(&fd).cloned(),
            MapRef::Idx(_) => None,
        }
    }

    fn helper(&self, id: i32) -> Option<HelperProto> {
        if id == 181 {
            let a = Arg::new;
            return Some(HelperProto {
                id,
                name: "loop",
                ret: Ret::INTEGER,
                args: [
                    a(ArgType::Anything),
                    a(ArgType::PtrToFunc),
                    Arg {
                        ty: ArgType::PtrToStack,
                        flags: TypeFlags::PTR_MAYBE_NULL,
                    },
                    a(ArgType::Anything),
                    Arg::DONTCARE,
                ],
                gpl_only: false,
                might_sleep: false,
                pkt_access: false,
            });
        }
        mock_helper(id)
    }

    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<crate::env::CtxField> {
        self.mock.ctx_access(off, size, write)
    }
}

struct Case {
    name: String,
    expect: Result<(), (i32, String)>,
    func_info: bool,
    maps: Vec<(String, u32, u32, u32, u32)>,
    prog: Vec<String>,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut cur: Option<Case> = None;
    let mut in_prog = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("### ") {
            cases.extend(cur.take());
            cur = Some(Case {
                name: name.trim().to_owned(),
                expect: Ok(()),
                func_info: false,
                maps: Vec::new(),
                prog: Vec::new(),
            });
            in_prog = false;
            continue;
        }
        let Some(c) = cur.as_mut() else {
            continue;
        };
        if in_prog {
            if !line.trim_start().starts_with('#') {
                c.prog.push(line.to_owned());
            }
            continue;
        }
        if line.trim() == "---" {
            in_prog = true;
        } else if let Some(e) = line.strip_prefix("expect: reject ") {
            let (errno, msg) = e.split_once(' ').unwrap();
            let errno = match errno {
                "EACCES" => EACCES,
                "EINVAL" => EINVAL,
                "E2BIG" => E2BIG,
                other => panic!("errno {other}"),
            };
            c.expect = Err((errno, msg.to_owned()));
        } else if line.trim() == "btf: func_info" {
            c.func_info = true;
        } else if let Some(m) = line.strip_prefix("map: ") {
            let f: Vec<&str> = m.split_whitespace().collect();
            let ty = match f[1] {
                "hash" => 1,
                "array" => 2,
                other => panic!("map type {other}"),
            };
            c.maps.push((
                f[0].to_owned(),
                ty,
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            ));
        }
    }
    cases.extend(cur);
    cases
}

/// Assembles the program: `map[NAME]` becomes the map's fd, `subprog[L]`
/// a `BPF_PSEUDO_FUNC` load of label `L`. Returns the instructions and
/// the subprogram starts.
fn build(
    case: &Case,
    fds: &BTreeMap<String, i32>,
    kfuncs: &[(&'static str, u32, KfuncFlags)],
) -> (Vec<Insn>, Vec<u32>) {
    let mut text = String::new();
    let mut funcs = Vec::new();
    let mut labels = BTreeMap::new();
    let mut op = 0usize;
    for line in &case.prog {
        let mut line = line.clone();
        for (name, id, _) in kfuncs {
            line = line.replace(&format!("kfunc:{name}"), &format!("kernel-function#{id}"));
        }
        for (name, fd) in fds {
            line = line.replace(&format!("map[{name}]"), &format!("map[id:{fd}]"));
        }
        let body = line.trim().to_owned();
        if let Some(l) = body.strip_suffix(':') {
            labels.insert(l.to_owned(), op);
        }
        if let Some(pos) = line.find("subprog[") {
            let end = line[pos..].find(']').unwrap() + pos;
            funcs.push((op, line[pos + 8..end].to_owned()));
            line = format!("{}subprog[0]{}", &line[..pos], &line[end + 1..]);
        }
        if !body.is_empty() && !body.ends_with(':') {
            op += 1;
        }
        text.push_str(&line);
        text.push('\n');
    }
    let prog = assemble(&text).unwrap();
    let mut insns = prog.encode();
    let mut starts = vec![0];
    for (idx, label) in funcs {
        let target = prog.pc_of(labels[&label]).unwrap();
        let pc = prog.pc_of(idx).unwrap();
        insns[pc].imm = target as i32 - pc as i32 - 1;
        starts.push(target as u32);
    }
    starts.sort_unstable();
    starts.dedup();
    (insns, starts)
}

#[test]
fn loops_txt_cases_agree_with_the_kernel() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../structops/tests/verifier_cases/loops.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let cases = parse(&text);
    assert!(cases.len() > 20);
    let mut run = 0;
    let mut bad = Vec::new();
    let (btf, kfuncs) = iter_num_btf();
    for case in &cases {
        let mut maps = BTreeMap::new();
        let mut fds = BTreeMap::new();
        for (i, (name, ty, ks, vs, n)) in case.maps.iter().enumerate() {
            let fd = 100 + i as i32;
            fds.insert(name.clone(), fd);
            maps.insert(
                fd,
                MapInfo {
                    map_type: *ty,
                    key_size: *ks,
                    value_size: *vs,
                    max_entries: *n,
                    flags: 0,
                    rdonly_prog: false,
                    wronly_prog: false,
                    frozen_value: None,
                    name: name.clone(),
                    direct_value: *ty == 2 && *n == 1,
                },
            );
        }
        let (insns, starts) = build(case, &fds, &kfuncs);
        let env = Env {
            mock: Mock::default(),
            maps,
            btf: btf.clone(),
            kfuncs: kfuncs.clone(),
        };
        let info = ProgInfo {
            gpl_compatible: true,
            privileges: Privileges::ROOT,
            func_info: if case.func_info { starts } else { Vec::new() },
            ..ProgInfo::default()
        };
        let got = verify(&insns, &info, &env, &LogOptions::default())
            .map(|_| ())
            .map_err(|e| (e.errno, e.message));
        run += 1;
        let ok = match (&case.expect, &got) {
            (Ok(()), Ok(())) => true,
            (Err((errno, msg)), Err((e, m))) => errno == e && m.contains(msg.as_str()),
            _ => false,
        };
        if !ok {
            bad.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name, case.expect, got
            ));
        }
    }
    assert!(run >= 20, "only {run} cases run");
    assert!(
        bad.is_empty(),
        "{} of {run} differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
