//! `structops --host PATH ...` against a running host: this test process is the host
//! (a TCP congestion-control host serving its runtime on a control socket), and each
//! command is a separate `structops` process. Every verb's text and JSON output is a
//! snapshot; the effects of the changing verbs are checked on the host's side too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use structops_control::{ControlServer, Serve, ServeConfig};
use structops_tcp::{HostConfig, TcpHost};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A committed object, by its path from the repository root (commands run there, so
/// the path in messages is the same on every machine).
fn bpf(name: &str) -> String {
    format!("bpf/{name}")
}

/// A host serving a fresh TCP runtime with `bpf/demo_cc.bpf.o` registered.
struct Host {
    tcp: TcpHost,
    _seven: structops::ProgHandle,
    _server: ControlServer,
    path: PathBuf,
    _dir: PathBuf,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn host(tag: &str) -> (Host, structops_tcp::LoadedCc) {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "structops-live-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let tcp = TcpHost::new(HostConfig::default()).unwrap();
    let bytes = std::fs::read(repo().join(bpf("demo_cc.bpf.o"))).unwrap();
    let cc = tcp.load_object(&bytes, "demo_cc.bpf.o", None).unwrap();
    // A socket filter to test-run through the socket: `return 7`.
    let insns = structops_isa::assemble("r0 = 7\nexit").unwrap().encode();
    let seven = tcp
        .runtime()
        .prog_load(
            &structops::ProgLoadAttr::new(structops::ProgType::SOCKET_FILTER, insns, "GPL")
                .name("seven"),
        )
        .unwrap();
    let path = dir.join("ctl.sock");
    let config = ServeConfig::default().status(
        || serde_json::json!({"flows": [{"id": 0, "cc": "so_demo", "goodput_mbps": 12.5}]}),
    );
    let server = tcp.runtime_arc().serve(&path, config).unwrap();
    (
        Host {
            tcp,
            _seven: seven,
            _server: server,
            path,
            _dir: dir,
        },
        cc,
    )
}

fn structops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

/// Runs `structops --host PATH ARGS` and returns what a user sees: stdout, and stderr
/// and the exit status when there are any.
fn run(h: &Host, args: &[&str]) -> String {
    let path = h.path.display().to_string();
    let mut full = vec!["--host", path.as_str()];
    full.extend_from_slice(args);
    let o = structops(&full);
    let mut s = stable(&String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.is_empty() {
        s.push_str("--- stderr\n");
        s.push_str(&stable(&err).replace(&path, "<SOCKET>"));
    }
    if o.status.code() != Some(0) {
        s.push_str(&format!("--- exit {:?}\n", o.status.code()));
    }
    s
}

/// The output without what differs from run to run: load times, and native code
/// (Cranelift picks instructions for the CPU it runs on).
fn stable(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_string();
        if let Some(at) = l.find("loaded_at ") {
            l = format!("{}loaded_at <TIME>", &l[..at]);
        }
        if let Some(at) = l.find("duration: ") {
            let rest = &l[at + 10..];
            let end = rest.find(' ').unwrap_or(rest.len());
            l = format!("{}duration: <N>{}", &l[..at], &rest[end..]);
        }
        for key in ["\"loaded_at\":", "\"bytes_jited\":", "\"duration_ns\":"] {
            let mut from = 0;
            while let Some(at) = l[from..].find(key).map(|a| a + from) {
                let start = at + key.len();
                let end = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(l.len(), |e| start + e);
                l = format!("{}\"<N>\"{}", &l[..start], &l[end..]);
                from = start;
            }
        }
        if let Some(at) = l.find("  jited ") {
            let rest = &l[at + 8..];
            let end = rest.find('B').unwrap_or(0);
            l = format!("{}  jited <N>{}", &l[..at], &rest[end..]);
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Runs a verb in text and JSON and snapshots both.
fn both(h: &Host, name: &str, args: &[&str]) {
    insta::assert_snapshot!(format!("{name}"), run(h, args));
    let mut j = vec!["-j"];
    j.extend_from_slice(args);
    insta::assert_snapshot!(format!("{name}_json"), run(h, &j));
}

fn json(h: &Host, args: &[&str]) -> serde_json::Value {
    let path = h.path.display().to_string();
    let mut full = vec!["-j", "--host", path.as_str()];
    full.extend_from_slice(args);
    let o = structops(&full);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn read_verbs() {
    let (h, _cc) = host("read");
    both(&h, "prog_show", &["prog", "show"]);
    both(
        &h,
        "prog_show_name",
        &["prog", "show", "name", "so_demo_ssthresh"],
    );
    let progs = json(&h, &["prog", "show"]);
    let id = progs[1]["id"].to_string();
    both(
        &h,
        "prog_dump_xlated",
        &["prog", "dump", "xlated", "id", &id],
    );
    // Native code differs by CPU: its shape only.
    let j = json(&h, &["prog", "dump", "jited", "id", &id]);
    assert_eq!(j["name"], progs[1]["name"]);
    let funcs = j["functions"].as_array().unwrap();
    assert!(!funcs.is_empty());
    assert!(funcs[0]["insns"].as_array().unwrap().len() > 3);
    assert!(funcs[0]["name"].as_str().unwrap().starts_with("bpf_prog_"));
    let text = run(&h, &["prog", "dump", "jited", "id", &id]);
    assert!(text.starts_with(&format!("{}:\n", funcs[0]["name"].as_str().unwrap())));
    both(&h, "map_show", &["map", "show"]);
    both(&h, "map_show_name", &["map", "show", "name", "demo_calls"]);
    both(&h, "map_dump", &["map", "dump", "name", "demo_calls"]);
    both(
        &h,
        "map_lookup",
        &[
            "map",
            "lookup",
            "name",
            "demo_calls",
            "key",
            "2",
            "0",
            "0",
            "0",
        ],
    );
    both(&h, "struct_ops_show", &["struct_ops", "show"]);
    both(
        &h,
        "struct_ops_dump",
        &["struct_ops", "dump", "name", "demo"],
    );
    both(&h, "link_show", &["link", "show"]);
    both(&h, "btf_show", &["btf", "show"]);
    let btfs = json(&h, &["btf", "show"]);
    let host_btf = btfs
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kernel"] == true)
        .unwrap()["id"]
        .to_string();
    insta::assert_snapshot!(
        "btf_dump_c",
        run(
            &h,
            &[
                "btf",
                "dump",
                "id",
                &host_btf,
                "--format",
                "c",
                "--type",
                "tcp_congestion_ops"
            ]
        )
    );
    both(&h, "status", &["status"]);
    // Test runs in the host.
    let pkt = h._dir.join("pkt");
    std::fs::write(&pkt, [0u8; 64]).unwrap();
    let pkt = pkt.display().to_string();
    both(
        &h,
        "prog_run",
        &[
            "prog",
            "run",
            "name",
            "seven",
            "--data-in",
            &pkt,
            "--repeat",
            "4",
        ],
    );
    // A struct_ops member given a NULL socket: the checked run stops at the access.
    both(
        &h,
        "prog_run_fault",
        &["prog", "run", "name", "so_demo_ssthresh", "--args", "0"],
    );
}

#[test]
fn changing_verbs_change_the_host() {
    let (h, cc) = host("write");
    let calls = json(&h, &["map", "show", "name", "demo_calls"])[0]["id"].to_string();
    // update, then lookup sees it.
    both(
        &h,
        "map_update",
        &[
            "map", "update", "id", &calls, "key", "1", "0", "0", "0", "value", "hex", "2a", "00",
            "00", "00", "00", "00", "00", "00",
        ],
    );
    let v = json(
        &h,
        &["map", "lookup", "id", &calls, "key", "1", "0", "0", "0"],
    );
    assert_eq!(v["formatted"]["value"], 42, "{v}");
    // An array's elements cannot be deleted: the errno, the step and a hint.
    both(
        &h,
        "map_delete_array",
        &["map", "delete", "id", &calls, "key", "1", "0", "0", "0"],
    );
    // Register a second congestion control, then remove it; once in text, once in JSON.
    let reno = bpf("reno.bpf.o");
    for json_mode in [false, true] {
        let sfx = if json_mode { "_json" } else { "" };
        let j: &[&str] = if json_mode { &["-j"] } else { &[] };
        let args = [j, &["struct_ops", "register", reno.as_str()]].concat();
        insta::assert_snapshot!(format!("struct_ops_register{sfx}"), run(&h, &args));
        assert!(h.tcp.available().contains(&"so_reno".to_string()));
        if !json_mode {
            // The same name again: EEXIST with a hint.
            insta::assert_snapshot!("struct_ops_register_twice", run(&h, &args));
        }
        let args = [j, &["struct_ops", "unregister", "name", "reno"]].concat();
        insta::assert_snapshot!(format!("struct_ops_unregister{sfx}"), run(&h, &args));
        assert!(!h.tcp.available().contains(&"so_reno".to_string()));
    }
    // Hot swap: each update (text, then JSON) moves the host's link to a new map.
    let link = json(&h, &["link", "show"])[0]["id"].to_string();
    let fixed = bpf("demo_fixed.bpf.o");
    let mut map_id = json(&h, &["link", "show"])[0]["map_id"].clone();
    for json_mode in [false, true] {
        let sfx = if json_mode { "_json" } else { "" };
        let j: &[&str] = if json_mode { &["-j"] } else { &[] };
        let args = [j, &["link", "update", "id", link.as_str(), fixed.as_str()]].concat();
        insta::assert_snapshot!(format!("link_update{sfx}"), run(&h, &args));
        let now = json(&h, &["link", "show"])[0]["map_id"].clone();
        assert_ne!(now, map_id);
        map_id = now;
    }
    // The link's map is demo_fixed's `demo`, and so_demo stays registered.
    let demo = json(&h, &["struct_ops", "show", "id", &map_id.to_string()]);
    assert_eq!(demo[0]["name"], "demo", "{demo}");
    assert!(h.tcp.available().contains(&"so_demo".to_string()));
    // FILE:MAP naming a map the object lacks.
    insta::assert_snapshot!(
        "link_update_no_such_map",
        run(
            &h,
            &["link", "update", "id", &link, &format!("{fixed}:nope")]
        )
    );
    insta::assert_snapshot!("link_detach", run(&h, &["link", "detach", "id", &link]));
    assert!(!h.tcp.available().contains(&"so_demo".to_string()));
    insta::assert_snapshot!(
        "link_detach_json",
        run(&h, &["-j", "link", "detach", "id", &link])
    );
    drop(cc);
}

#[test]
fn errors_name_the_step_and_errno() {
    let (h, _cc) = host("errors");
    insta::assert_snapshot!("prog_show_missing", run(&h, &["prog", "show", "id", "999"]));
    insta::assert_snapshot!(
        "map_lookup_missing_key",
        run(
            &h,
            &[
                "map",
                "lookup",
                "name",
                "demo_calls",
                "key",
                "9",
                "0",
                "0",
                "0"
            ]
        )
    );
    insta::assert_snapshot!(
        "map_lookup_bad_byte",
        run(&h, &["map", "lookup", "name", "demo_calls", "key", "300"])
    );
    insta::assert_snapshot!(
        "link_update_wrong_name",
        run(&h, &["link", "update", "id", "1", &bpf("reno.bpf.o")]).replace(&bpf(""), "bpf/")
    );
    insta::assert_snapshot!(
        "register_garbage",
        run(&h, &["struct_ops", "register", "Cargo.toml"])
    );
    insta::assert_snapshot!(
        "map_update_short_value",
        run(
            &h,
            &[
                "map",
                "update",
                "name",
                "demo_calls",
                "key",
                "0",
                "0",
                "0",
                "0",
                "value",
                "1"
            ]
        )
    );
    // Not a host at all.
    let o = structops(&["--host", "/nonexistent/ctl.sock", "prog", "show"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("no_host", String::from_utf8_lossy(&o.stderr));
    // Verbs that need a host say so.
    let o = structops(&["map", "update", "id", "1", "key", "0", "value", "0"]);
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("needs_host", String::from_utf8_lossy(&o.stderr));
}
