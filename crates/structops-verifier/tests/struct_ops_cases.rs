//! The struct_ops family of the project's accept/reject suite
//! (`crates/structops/tests/verifier_cases/struct_ops.txt`, every
//! expectation checked against Linux 6.18) run directly through
//! `structops_verifier::verify` with the running kernel's BTF and the
//! kernel's `bpf_dummy_ops` / `tcp_congestion_ops` hooks. The verdict, the
//! errno and the kernel's message must all agree.

mod kernel_ops;

use structops_btf::Kind;
use structops_isa::assemble;
use structops_verifier::{LogOptions, MapInfo, ProgInfo, StructOpsAttach, verify};

use kernel_ops::{KernelOps, member, vmlinux};

/// One case of the file.
#[derive(Debug, Default)]
struct Case {
    name: String,
    attach: Option<(String, String)>,
    gpl: bool,
    sleepable: bool,
    /// `None`: accept; else (errno, message substring).
    reject: Option<(i32, String)>,
    maps: Vec<(String, u32, u32, u32, u32)>,
    prog: Vec<String>,
}

fn errno(name: &str) -> i32 {
    match name {
        "EPERM" => 1,
        "EBADF" => 9,
        "EACCES" => 13,
        "EFAULT" => 14,
        "EINVAL" => 22,
        "E2BIG" => 7,
        "ENOTSUPP" => 524,
        _ => -1,
    }
}

fn map_type(name: &str) -> u32 {
    match name {
        "hash" => 1,
        "array" => 2,
        "prog_array" => 3,
        "percpu_hash" => 5,
        "percpu_array" => 6,
        "lru_hash" => 9,
        "queue" => 22,
        "stack" => 23,
        "sk_storage" => 24,
        "ringbuf" => 27,
        _ => 0,
    }
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
                gpl: true,
                ..Case::default()
            });
            in_prog = false;
            continue;
        }
        let Some(c) = cur.as_mut() else { continue };
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if in_prog {
            if !t.is_empty() {
                c.prog.push(line.to_owned());
            }
            continue;
        }
        if t == "---" {
            in_prog = true;
        } else if let Some(v) = t.strip_prefix("attach:") {
            let (s, m) = v.trim().split_once('.').unwrap_or((v.trim(), ""));
            c.attach = Some((s.to_owned(), m.to_owned()));
        } else if let Some(v) = t.strip_prefix("license:") {
            let v = v.trim();
            c.gpl = matches!(v, "GPL" | "GPL v2" | "Dual BSD/GPL" | "Dual MIT/GPL");
        } else if let Some(v) = t.strip_prefix("flags:") {
            c.sleepable = v.contains("sleepable");
        } else if let Some(v) = t.strip_prefix("expect:") {
            let v = v.trim();
            if let Some(r) = v.strip_prefix("reject ") {
                let (e, msg) = r.split_once(' ').unwrap_or((r, ""));
                c.reject = Some((errno(e), msg.to_owned()));
            }
        } else if let Some(v) = t.strip_prefix("map:") {
            let f: Vec<&str> = v.split_whitespace().collect();
            c.maps.push((
                f[0].to_owned(),
                map_type(f[1]),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            ));
        }
    }
    cases.extend(cur);
    cases
}

/// `offsetof(S, a.b)`, `sizeof(S)`, `map[NAME]` and `call kfunc:NAME`.
fn substitute(line: &str, env: &KernelOps, maps: &[(String, u32, u32, u32, u32)]) -> String {
    let mut out = line.to_owned();
    while let Some(pos) = out.find("offsetof(") {
        let end = out[pos..].find(')').unwrap() + pos;
        let (s, path) = out[pos + 9..end].split_once(',').unwrap();
        let (off, _) = member(&env.btf, s.trim(), path.trim()).unwrap();
        out = format!("{}{off}{}", &out[..pos], &out[end + 1..]);
    }
    while let Some(pos) = out.find("sizeof(") {
        let end = out[pos..].find(')').unwrap() + pos;
        let id = env
            .btf
            .find_by_name_kind(out[pos + 7..end].trim(), Kind::Struct)
            .unwrap();
        let size = env.btf.size_of(id).unwrap();
        out = format!("{}{size}{}", &out[..pos], &out[end + 1..]);
    }
    for (i, m) in maps.iter().enumerate() {
        out = out.replace(&format!("map[{}]", m.0), &format!("map[id:{}]", i + 1));
    }
    if let Some(pos) = out.find("kfunc:") {
        let name: String = out[pos + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let id = env.btf.find_by_name_kind(&name, Kind::Func).unwrap();
        out = format!(
            "{}kernel-function#{id}{}",
            &out[..pos],
            &out[pos + 6 + name.len()..]
        );
    }
    out
}

#[test]
fn struct_ops_cases_agree_with_the_kernel() {
    let btf = match vmlinux() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../structops/tests/verifier_cases/struct_ops.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let cases = parse(&text);
    assert!(cases.len() >= 40, "only {} cases parsed", cases.len());
    let mut env = KernelOps::new(btf).unwrap();
    let mut bad = Vec::new();
    for c in &cases {
        env.maps.clear();
        for (i, m) in c.maps.iter().enumerate() {
            env.maps.insert(
                i as i32 + 1,
                MapInfo {
                    map_type: m.1,
                    key_size: m.2,
                    value_size: m.3,
                    max_entries: m.4,
                    flags: 0,
                    rdonly_prog: false,
                    wronly_prog: false,
                    frozen_value: None,
                    name: m.0.clone(),
                    direct_value: m.1 == 2,
                },
            );
        }
        let src: Vec<String> = c
            .prog
            .iter()
            .map(|l| substitute(l, &env, &c.maps))
            .collect();
        let insns = assemble(&src.join("\n")).unwrap().encode();
        let (s, m) = c.attach.clone().unwrap();
        let (btf_id, member_idx) = env.target(&s, &m).unwrap();
        let info = ProgInfo {
            gpl_compatible: c.gpl,
            sleepable: c.sleepable,
            struct_ops: Some(StructOpsAttach { btf_id, member_idx }),
            ..ProgInfo::default()
        };
        let got = verify(&insns, &info, &env, &LogOptions::default());
        let verdict = match (&c.reject, &got) {
            (None, Ok(_)) => None,
            (None, Err(e)) => Some(format!("expected accept, got {} {}", e.errno, e.message)),
            (Some((en, msg)), Err(e)) if e.errno == *en && e.message.contains(msg.as_str()) => None,
            (Some((en, msg)), Err(e)) => Some(format!(
                "expected {en} `{msg}`, got {} `{}`",
                e.errno, e.message
            )),
            (Some((en, msg)), Ok(_)) => Some(format!("expected {en} `{msg}`, got accept")),
        };
        if let Some(v) = verdict {
            bad.push(format!("{}: {v}", c.name));
        }
    }
    eprintln!(
        "struct_ops cases: {} of {} agree",
        cases.len() - bad.len(),
        cases.len()
    );
    assert!(bad.is_empty(), "disagreements:\n{}", bad.join("\n"));
}
