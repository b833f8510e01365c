//! Snapshots of every verb that works on an object FILE loaded into a runtime inside
//! the `structops` process, in text and JSON. (The same verbs against a running host
//! are in `live.rs`; `object show` and `btf dump` have theirs in `cli.rs`.)
//!
//! The in-process runtime's host BTF is this machine's `/sys/kernel/btf/vmlinux`; the
//! tests skip, saying so, where it is absent. What depends on the machine — load times,
//! native code sizes, verification times, the vmlinux size — is masked.

use std::path::Path;
use std::process::Command;

fn vmlinux() -> bool {
    let ok = Path::new("/sys/kernel/btf/vmlinux").exists();
    if !ok {
        eprintln!("skipped: the in-process runtime's host BTF /sys/kernel/btf/vmlinux is absent");
    }
    ok
}

/// Runs `structops ARGS` in the repository root: stdout, then stderr and the exit
/// status when there are any, with machine-dependent figures masked.
fn run(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    let mut s = mask(&String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    if !err.is_empty() {
        s.push_str("--- stderr\n");
        s.push_str(&mask(&err));
    }
    if o.status.code() != Some(0) {
        s.push_str(&format!("--- exit {:?}\n", o.status.code()));
    }
    s
}

/// Replaces the number after each `key` in `line` with `<N>`.
fn mask_after(line: &str, key: &str) -> String {
    let mut l = line.to_string();
    let mut from = 0;
    while let Some(at) = l[from..].find(key).map(|a| a + from) {
        let start = at + key.len();
        let end = l[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(l.len(), |e| start + e);
        if end > start {
            l = format!("{}<N>{}", &l[..start], &l[end..]);
        }
        from = start;
    }
    l
}

fn mask(s: &str) -> String {
    let mut out = String::new();
    // `verify`'s table: the Time (us) column.
    let mut time_col = None;
    for line in s.lines() {
        let mut l = line.to_string();
        if let Some(c) = l.find("Time (us)") {
            time_col = Some(c);
        } else if let Some(c) = time_col
            .filter(|&c| c + 9 <= l.len() && l[c..c + 9].chars().any(|ch| ch.is_ascii_digit()))
        {
            l.replace_range(c..c + 9, "      <N>");
        }
        if let Some(at) = l.find("loaded_at ") {
            l = format!("{}loaded_at <TIME>", &l[..at]);
        }
        for key in [
            "\"loaded_at\":",
            "\"bytes_jited\":",
            "  jited ",
            "\"time_usec\":",
            "\"duration_ns\":",
            "duration: ",
            "name [vmlinux]  size ",
        ] {
            l = mask_after(&l, key);
        }
        // vmlinux's size in JSON: `{"id":1,"kernel":true,"name":"vmlinux","size":N}`.
        if l.contains("\"name\":\"vmlinux\"") {
            l = mask_after(&l, "\"vmlinux\",\"size\":");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Snapshots `structops ARGS` and `structops -j ARGS`.
fn both(name: &str, args: &[&str]) {
    insta::assert_snapshot!(name.to_string(), run(args));
    let j = [&["-j"], args].concat();
    insta::assert_snapshot!(format!("{name}_json"), run(&j));
}

#[test]
fn show_verbs_on_a_file() {
    if !vmlinux() {
        return;
    }
    both("prog_show_file", &["prog", "show", "bpf/maps.bpf.o"]);
    both(
        "prog_show_file_id",
        &["prog", "show", "bpf/maps.bpf.o", "id", "3"],
    );
    both("map_show_file", &["map", "show", "bpf/maps.bpf.o"]);
    both(
        "map_show_file_name",
        &["map", "show", "bpf/maps.bpf.o", "name", "counters"],
    );
    both(
        "map_lookup_file",
        &[
            "map",
            "lookup",
            "bpf/globals.bpf.o",
            "name",
            "globals.data",
            "key",
            "0",
            "0",
            "0",
            "0",
        ],
    );
    both(
        "struct_ops_show_file",
        &["struct_ops", "show", "bpf/dummy_ops.bpf.o"],
    );
    both(
        "struct_ops_dump_file",
        &[
            "struct_ops",
            "dump",
            "bpf/dummy_ops.bpf.o",
            "name",
            "dummy_ops_link",
        ],
    );
    both("btf_show_file", &["btf", "show", "bpf/maps.bpf.o"]);
}

#[test]
fn dump_run_and_verify_verbs_on_a_file() {
    if !vmlinux() {
        return;
    }
    both(
        "prog_dump_xlated_file",
        &[
            "prog",
            "dump",
            "xlated",
            "bpf/maps.bpf.o",
            "--prog",
            "tail_target",
        ],
    );
    both(
        "map_dump_file",
        &["map", "dump", "bpf/maps.bpf.o", "--map", "inner_a"],
    );
    both(
        "prog_run_file",
        &[
            "prog",
            "run",
            "bpf/dummy_ops.bpf.o",
            "--prog",
            "dummy_test_1",
            "--args",
            "0",
            "--engine",
            "interp",
        ],
    );
    both("verify_file", &["verify", "bpf/dummy_ops.bpf.o"]);
    both(
        "struct_ops_register_file",
        &["struct_ops", "register", "bpf/dummy_ops.bpf.o"],
    );
    // Native code differs by CPU: the shape only, both engines' labels.
    let text = run(&[
        "prog",
        "dump",
        "jited",
        "bpf/maps.bpf.o",
        "--prog",
        "tail_target",
    ]);
    assert!(text.starts_with("bpf_prog_"), "{text}");
    assert!(text.contains("_tail_target:\n"), "{text}");
    assert!(text.lines().count() > 5, "{text}");
}

#[test]
fn file_verbs_refuse_what_needs_a_host() {
    for (name, args) in [
        (
            "file_map_update",
            &[
                "map",
                "update",
                "bpf/maps.bpf.o",
                "name",
                "counts",
                "key",
                "0",
                "0",
                "0",
                "0",
                "value",
                "0",
            ][..],
        ),
        ("file_link_show", &["link", "show"][..]),
        (
            "file_unregister",
            &["struct_ops", "unregister", "name", "x"][..],
        ),
        ("file_status", &["status"][..]),
        ("file_two_files", &["prog", "show", "a.o", "b.o"][..]),
        (
            "host_and_file",
            &[
                "--host",
                "/nonexistent.sock",
                "prog",
                "show",
                "bpf/maps.bpf.o",
            ][..],
        ),
        (
            "host_object_show",
            &["--host", "/nonexistent.sock", "object", "show"][..],
        ),
    ] {
        insta::assert_snapshot!(name, run(args));
    }
}

#[test]
fn completions_cover_every_noun() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(env!("CARGO_BIN_EXE_structops"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        for noun in [
            "prog",
            "map",
            "struct_ops",
            "link",
            "btf",
            "object",
            "verify",
            "tcp",
            "status",
        ] {
            assert!(text.contains(noun), "{shell}: no {noun}");
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
