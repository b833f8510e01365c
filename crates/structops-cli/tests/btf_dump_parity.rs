//! `structops btf dump FILE format raw` must be byte-identical to
//! `bpftool btf dump file FILE format raw` (and the JSON forms equal) on the host's
//! vmlinux, on every object of the conformance corpus and on every project fixture.
//! Skips, saying why, when bpftool or the inputs are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bpftool() -> Option<PathBuf> {
    ["/usr/sbin/bpftool", "/usr/bin/bpftool", "/sbin/bpftool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Every input to compare: vmlinux, corpus objects, fixtures.
fn inputs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    let vmlinux = PathBuf::from("/sys/kernel/btf/vmlinux");
    if vmlinux.exists() {
        v.push(vmlinux);
    } else {
        eprintln!("note: /sys/kernel/btf/vmlinux absent, not compared");
    }
    let corpus = root().join("conformance/build/corpus");
    match std::fs::read_to_string(corpus.join("MANIFEST")) {
        Ok(m) => v.extend(
            m.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split('\t').next())
                .filter(|n| !n.is_empty())
                .map(|n| corpus.join(n)),
        ),
        Err(_) => eprintln!("note: corpus not built (run conformance/build.sh), not compared"),
    }
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(root().join("bpf"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".bpf.o"))
                .collect()
        })
        .unwrap_or_default();
    fixtures.sort();
    v.extend(fixtures);
    v
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: ours {x:?} vs bpftool {y:?}", i + 1);
        }
    }
    format!(
        "line counts differ: {} vs {}",
        a.lines().count(),
        b.lines().count()
    )
}

#[test]
fn raw_text_and_json_equal_bpftool() {
    let Some(bpftool) = bpftool() else {
        eprintln!("skipped: bpftool not installed (conformance/deps.sh installs it)");
        return;
    };
    let ours = env!("CARGO_BIN_EXE_structops");
    let files = inputs();
    let mut compared = 0;
    for f in &files {
        let theirs = run(Command::new(&bpftool)
            .args(["btf", "dump", "file"])
            .arg(f)
            .args(["format", "raw"]));
        let mine = run(Command::new(ours)
            .args(["btf", "dump"])
            .arg(f)
            .args(["--format", "raw"]));
        assert!(
            mine == theirs,
            "{}: raw dump differs from bpftool's: {}",
            f.display(),
            first_difference(&mine, &theirs)
        );
        let theirs_j = run(Command::new(&bpftool)
            .args(["-j", "btf", "dump", "file"])
            .arg(f)
            .args(["format", "raw"]));
        let mine_j = run(Command::new(ours).args(["-j", "btf", "dump"]).arg(f));
        let tj: serde_json::Value = serde_json::from_slice(&theirs_j).expect("bpftool JSON");
        let mj: serde_json::Value = serde_json::from_slice(&mine_j).expect("our JSON");
        assert!(
            tj == mj,
            "{}: JSON dump differs from bpftool's",
            f.display()
        );
        compared += 1;
    }
    eprintln!("compared {compared} inputs with bpftool, all byte-identical");
    assert!(
        compared >= 1,
        "fixtures are committed, so at least they are compared"
    );
}
