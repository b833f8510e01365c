//! End-to-end tests of the `structops` binary: output snapshots and the error contract
//! (exit code 1, the errno name and the failing step on stderr, no panic).

use std::process::{Command, Output};

fn structops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("structops runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn object_show_bundled_default() {
    let o = structops(&["object", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn object_show_json_lists_struct_ops_bindings() {
    let o = structops(&["-j", "object", "show", "bpf/dummy_ops.bpf.o"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let maps = v["struct_ops"].as_array().expect("struct_ops array");
    assert!(!maps.is_empty());
    assert!(maps.iter().all(|m| m["type"] == "bpf_dummy_ops"));
    assert!(maps.iter().any(|m| m["link"] == true));
    insta::assert_snapshot!(format!("{v:#}"));
}

#[test]
fn btf_dump_c_of_a_fixture() {
    let o = structops(&["btf", "dump", "bpf/dummy_ops.bpf.o", "--format", "c"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("struct bpf_dummy_ops"));
    let o = structops(&[
        "btf",
        "dump",
        "bpf/dummy_ops.bpf.o",
        "--format",
        "c",
        "--type",
        "bpf_dummy_ops_state",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn missing_file_is_enoent() {
    let o = structops(&["object", "show", "/nonexistent.bpf.o"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("reading /nonexistent.bpf.o") && e.contains("(ENOENT)"),
        "{e}"
    );
}

#[test]
fn garbage_object_is_a_typed_error() {
    let dir = std::env::temp_dir().join(format!("structops-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let bad = dir.join("garbage.o");
    std::fs::write(&bad, b"\x7fELF\x02\x01\x01garbage-garbage-garbage").expect("write");
    let p = bad.to_string_lossy().into_owned();
    for args in [
        vec!["object", "show", p.as_str()],
        vec!["btf", "dump", p.as_str()],
        vec!["-j", "object", "show", p.as_str()],
    ] {
        let o = structops(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?} panicked");
    }
    // JSON mode reports the error as JSON on stdout, like bpftool.
    let o = structops(&["-j", "object", "show", p.as_str()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON error");
    assert_eq!(v["errno"], "EINVAL");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_program_names_the_alternatives() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: prog dump relocates against /sys/kernel/btf/vmlinux, absent here");
        return;
    }
    let o = structops(&[
        "prog",
        "dump",
        "xlated",
        "bpf/tcp_ca.bpf.o",
        "--prog",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no program named 'nope'") && e.contains("Hint: programs: so_init"),
        "{e}"
    );
}

#[test]
fn prog_dump_after_relocation() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: prog dump relocates against /sys/kernel/btf/vmlinux, absent here");
        return;
    }
    let o = structops(&[
        "prog",
        "dump",
        "xlated",
        "bpf/tcp_ca.bpf.o",
        "--prog",
        "so_cong_avoid",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // kfunc calls are bound to the host's BTF and printed by name.
    assert!(text.contains("call tcp_slow_start#"), "{text}");
    // The text reassembles to the same program (the disassembly is faithful).
    assert!(text.lines().count() > 10);
}

#[test]
fn prog_dump_resolves_kconfig_externs() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: prog dump relocates against /sys/kernel/btf/vmlinux, absent here");
        return;
    }
    let o = structops(&["-j", "object", "show", "bpf/globals.bpf.o"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let kconfig = v["externs"].as_array().expect("externs");
    assert!(
        kconfig.iter().any(|e| e["kind"] == "kconfig"),
        "fixture has kconfig externs"
    );
    let prog = v["programs"][0]["name"]
        .as_str()
        .expect("a program")
        .to_string();
    let o = structops(&[
        "prog",
        "dump",
        "xlated",
        "bpf/globals.bpf.o",
        "--prog",
        &prog,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // kconfig values are read from the program's .kconfig map.
    assert!(
        stdout(&o).contains("map[globals.kconfig]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    let o = structops(&["object", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = structops(&["btf", "dump", "x", "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Bad arguments of every shape are usage errors (exit 2, no panic) whose message names
/// the argument; none of them reaches a file or a host.
#[test]
fn bad_arguments_are_usage_errors_naming_the_argument() {
    for (args, says) in [
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (
            &["prog", "frobnicate"][..],
            "unrecognized subcommand 'frobnicate'",
        ),
        (&["-j"][..], "requires a subcommand"),
        (&["prog", "show", "id", "abc"][..], "'abc' is not an id"),
        (
            &["prog", "show", "id", "99999999999"][..],
            "'99999999999' is not an id",
        ),
        (
            &["prog", "show", "id", "-1"][..],
            "unexpected argument '-1'",
        ),
        (
            &["--host", "/nonexistent.sock", "map", "show", "id", "x1"][..],
            "'x1' is not an id",
        ),
        (
            &[
                "prog",
                "run",
                "bpf/maps.bpf.o",
                "--prog",
                "xdp_count",
                "--repeat",
                "x",
            ][..],
            "invalid value 'x' for '--repeat <N>'",
        ),
        (
            &[
                "map",
                "lookup",
                "bpf/maps.bpf.o",
                "name",
                "counts",
                "key",
                "0x1g",
            ][..],
            "key: '0x1g' is not a byte",
        ),
        (
            &[
                "map",
                "lookup",
                "bpf/maps.bpf.o",
                "name",
                "counts",
                "key",
                "256",
            ][..],
            "key: '256' is not a byte",
        ),
        (
            &["verify", "bpf/maps.bpf.o", "--log-level", "banana"][..],
            "invalid value 'banana' for '--log-level",
        ),
        (
            &["map", "dump", "bpf/maps.bpf.o", "--map"][..],
            "a value is required for '--map <NAME>'",
        ),
    ] {
        let o = structops(args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{args:?}: {e}");
    }
}

#[test]
fn prog_dump_every_fixture_program() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        eprintln!("skipped: prog dump relocates against /sys/kernel/btf/vmlinux, absent here");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let mut dumped = 0;
    for entry in std::fs::read_dir(&root).expect("bpf/ exists") {
        let path = entry.expect("dir entry").path();
        if !path.to_string_lossy().ends_with(".bpf.o") {
            continue;
        }
        let p = path.to_string_lossy().into_owned();
        let o = structops(&["-j", "object", "show", &p]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        for prog in v["programs"].as_array().expect("programs") {
            let name = prog["name"].as_str().expect("name");
            let o = structops(&["-j", "prog", "dump", "xlated", &p, "--prog", name]);
            let err = stderr(&o);
            assert!(!err.contains("panicked"), "{p} {name}: {err}");
            if o.status.success() {
                let d: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
                assert_eq!(
                    d["insn_cnt"].as_u64(),
                    Some(d["insns"].as_array().map_or(0, |a| a.len() as u64))
                );
                dumped += 1;
            } else {
                // A program the kernel cannot load here either (an absent kernel symbol,
                // or an ops type only a structops host declares, as `cache_ops`) fails
                // with a typed relocation error; with `-j` it is the JSON on stdout.
                let out = String::from_utf8_lossy(&o.stdout);
                assert!(
                    o.status.code() == Some(1)
                        && (err.contains("relocating") || out.contains("\"error\":\"relocating")),
                    "{p} {name}: {err}{out}"
                );
            }
        }
    }
    assert!(dumped >= 20, "only {dumped} fixture programs dumped");
}

fn fixture(name: &str) -> String {
    format!("{}/../../bpf/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp_file(tag: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("structops-cli-{}-{tag}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn prog_run_xdp_reports_retval_duration_and_data() {
    for engine in ["interp", "jit"] {
        prog_run_xdp_on(engine);
    }
}

/// `prog run` of the maps fixture's XDP program with `--engine engine`.
fn prog_run_xdp_on(engine: &str) {
    let pkt: Vec<u8> = (0..64u8).collect();
    let input = temp_file("pkt", &pkt);
    let output = std::env::temp_dir().join(format!("structops-cli-{}-out", std::process::id()));
    let o = structops(&[
        "-j",
        "prog",
        "run",
        &fixture("maps.bpf.o"),
        "--prog",
        "xdp_count",
        "--data-in",
        input.to_str().unwrap(),
        "--data-out",
        output.to_str().unwrap(),
        "--repeat",
        "3",
        "--engine",
        engine,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["name"], "xdp_count");
    assert_eq!(v["engine"], engine);
    assert_eq!(v["retval"], 2, "XDP_PASS");
    assert_eq!(v["repeat"], 3);
    assert_eq!(v["data_size_out"], 64);
    let hex: String = pkt.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v["data_out"], hex.as_str(), "the packet passes unchanged");
    assert_eq!(std::fs::read(&output).unwrap(), pkt);
    assert!(v["duration_ns"].as_u64().is_some());
    let _ = std::fs::remove_file(input);
    let _ = std::fs::remove_file(output);

    // Text mode prints the same facts.
    let input = temp_file("pkt2", &pkt);
    let o = structops(&[
        "prog",
        "run",
        &fixture("maps.bpf.o"),
        "--prog",
        "xdp_count",
        "--data-in",
        input.to_str().unwrap(),
        "--engine",
        engine,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains(&format!("(1 run, {engine})\n")), "{text}");
    assert!(text.starts_with("retval: 2 (0x2)\nduration: "), "{text}");
    assert!(
        text.contains("data_out: 64 bytes\n00000000  00 01 02"),
        "{text}"
    );
    let _ = std::fs::remove_file(input);
}

#[test]
fn prog_dump_jited_disassembles_the_native_code() {
    let o = structops(&[
        "prog",
        "dump",
        "jited",
        &fixture("maps.bpf.o"),
        "--prog",
        "xdp_count",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("bpf_prog_") && first.ends_with("_xdp_count:"),
        "{text}"
    );
    // The entry saves the frame pointer, and every function returns.
    assert!(text.contains("   0:\tpush rbp\n"), "{text}");
    assert!(
        text.contains("\tret\n") || text.ends_with("\tret"),
        "{text}"
    );
    // JSON: the length, and one function per BPF function (the entry, then the
    // bpf_loop and for_each callbacks).
    let o = structops(&[
        "-j",
        "prog",
        "dump",
        "jited",
        &fixture("maps.bpf.o"),
        "--prog",
        "xdp_count",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let funcs = v["functions"].as_array().unwrap();
    assert!(funcs.len() >= 2, "{v}");
    assert_eq!(funcs[0]["insn"], 0);
    // Every function ends in a return, with no padding or constants decoded as code.
    for f in funcs {
        let insns = f["insns"].as_array().unwrap();
        let last = insns.last().unwrap()["operation"].as_str().unwrap();
        assert!(
            last == "ret" || last.starts_with("jmp"),
            "{}: {last}",
            f["name"]
        );
        assert!(
            insns.iter().all(|i| i["operation"] != "(bad)"),
            "{}",
            f["name"]
        );
    }
    let decoded: usize = funcs
        .iter()
        .flat_map(|f| f["insns"].as_array().unwrap())
        .map(|i| i["bytes"].as_str().unwrap().split(' ').count())
        .sum();
    let len = v["jited_prog_len"].as_u64().unwrap() as usize;
    assert!(decoded > 0 && decoded <= len, "{decoded} of {len}");
    // A program the verifier rejects has no native code: the load fails.
    let o = structops(&[
        "prog",
        "dump",
        "jited",
        &fixture("maps.bpf.o"),
        "--prog",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn map_dump_after_a_run_shows_what_the_program_wrote() {
    let input = temp_file("pkt3", &[0u8; 60]);
    let o = structops(&[
        "-j",
        "map",
        "dump",
        &fixture("maps.bpf.o"),
        "--run",
        "xdp_count",
        "--data-in",
        input.to_str().unwrap(),
        "--map",
        "scratch",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["name"], "scratch");
    assert_eq!(v[0]["type"], "percpu_array");
    // bpf_loop(8, ...) summed 0..8 = 28 into one CPU's first u64.
    let entries = v[0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let sum: u64 = entries[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let first = &c["value"].as_array().unwrap()[0];
            u64::from_str_radix(first.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        })
        .sum();
    assert_eq!(sum, 28);
    let _ = std::fs::remove_file(input);
}

#[test]
fn map_dump_prints_global_data_with_btf() {
    let o = structops(&[
        "map",
        "dump",
        &fixture("globals.bpf.o"),
        "--map",
        "globals.rodata",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("map globals.rodata (id "), "{text}");
    assert!(text.contains("\"max_len\": 1500"), "{text}");
}

#[test]
fn prog_run_and_map_dump_refuse_bad_requests_with_typed_errors() {
    // Unknown program: ENOENT and the alternatives.
    let o = structops(&["prog", "run", &fixture("maps.bpf.o"), "--prog", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no program named 'nope'"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("(ENOENT)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("xdp_count"), "{}", stderr(&o));
    // Unknown map.
    let o = structops(&["map", "dump", &fixture("maps.bpf.o"), "--map", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Hint: maps: "), "{}", stderr(&o));
    // Not a number: a usage error.
    let o = structops(&[
        "prog",
        "run",
        &fixture("maps.bpf.o"),
        "--prog",
        "xdp_count",
        "--args",
        "1,two",
    ]);
    assert_eq!(o.status.code(), Some(2));
    // An engine that does not exist: a usage error naming the choices.
    let o = structops(&[
        "prog",
        "run",
        &fixture("maps.bpf.o"),
        "--prog",
        "xdp_count",
        "--engine",
        "turbo",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("interp, jit"), "{}", stderr(&o));
    // An XDP program without packet data: the runtime's EINVAL, as the kernel's.
    let o = structops(&["prog", "run", &fixture("maps.bpf.o"), "--prog", "xdp_count"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("running program 'xdp_count'"),
        "{}",
        stderr(&o)
    );
    // A garbage object.
    let junk = temp_file("junk", b"\x7fELF\x02\x01\x01garbage");
    let o = structops(&["map", "dump", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Error: "), "{}", stderr(&o));
    let _ = std::fs::remove_file(junk);
}

const BAD_CTX: &str = "crates/structops-cli/tests/fixtures/bad_ctx.o";

#[test]
fn verify_prints_one_row_per_program() {
    let o = structops(&["verify", &fixture("maps.bpf.o")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Program") && lines[0].contains("Peak states"));
    let rows = &lines[1..];
    assert_eq!(rows.len(), 4, "{text}");
    for name in ["tail_target", "sock_filter", "xdp_count", "tc_classify"] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "success", "{row}");
        // Insns, processed insns, total and peak states, time: all figures.
        for c in &cols[2..7] {
            assert!(c.parse::<u64>().is_ok(), "{row}");
        }
        assert!(cols[3].parse::<u64>().unwrap() > 0, "{row}");
    }
    // --prog selects one program.
    let o = structops(&["verify", &fixture("maps.bpf.o"), "--prog", "xdp_count"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2);
    let o = structops(&["verify", &fixture("maps.bpf.o"), "--prog", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ENOENT"), "{}", stderr(&o));
}

/// `structops -j verify FILE`: `(program, verdict, error)` per row, and whether the
/// command succeeded.
fn verify_rows(file: &str) -> (Vec<(String, String, String)>, bool) {
    let o = structops(&["-j", "verify", file]);
    let out = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {out}\n{}", stderr(&o)));
    let rows = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["program"].as_str().unwrap_or("").to_owned(),
                p["verdict"].as_str().unwrap_or("").to_owned(),
                p["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    (rows, o.status.success())
}

/// Whether this machine's vmlinux declares `bpf_dummy_ops` (the CLI registers the
/// bundled twin against it).
fn has_dummy_ops() -> bool {
    let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        return false;
    };
    structops_btf::Btf::parse(&raw).is_ok_and(|b| {
        b.find_by_name_kind("bpf_dummy_ops", structops_btf::Kind::Struct)
            .is_some()
    })
}

/// The in-process runtime registers `bpf_dummy_ops`, so the fixture's programs verify
/// with its rules; Linux 6.18 loads each of them (`libbpf_report load --each
/// bpf/dummy_ops.bpf.o`: all five succeed).
#[test]
fn verify_dummy_ops_fixture_gives_the_kernels_verdicts() {
    if !has_dummy_ops() {
        eprintln!("skipped: /sys/kernel/btf/vmlinux has no bpf_dummy_ops");
        return;
    }
    let (rows, ok) = verify_rows(&fixture("dummy_ops.bpf.o"));
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    for p in [
        "dummy_test_1",
        "dummy_test_2",
        "dummy_test_sleepable",
        "dummy_plain_test_1",
    ] {
        assert!(names.contains(&p), "no row for {p}: {rows:?}");
    }
    for (prog, verdict, error) in &rows {
        assert_eq!(verdict, "success", "{prog}: {error}");
    }
    assert!(ok);
}

/// The kernel corpus' `dummy_st_ops` selftests (`conformance/build/corpus`, skipped when
/// not built): the success object verifies, and the fail object's sleepable `test_2`
/// is refused with the kernel's message (its `__msg`, and the running kernel's verdict).
#[test]
fn verify_dummy_st_ops_corpus_gives_the_kernels_verdicts() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/build/corpus"
    );
    let success = format!("{dir}/dummy_st_ops_success.bpf.o");
    let fail = format!("{dir}/dummy_st_ops_fail.bpf.o");
    if !std::path::Path::new(&fail).exists() || !has_dummy_ops() {
        eprintln!("skipped: no conformance corpus ({dir}) or no bpf_dummy_ops in vmlinux");
        return;
    }
    let (rows, ok) = verify_rows(&success);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (prog, verdict, error) in &rows {
        assert_eq!(verdict, "success", "{prog}: {error}");
    }
    assert!(ok);
    let (rows, ok) = verify_rows(&fail);
    assert_eq!(
        rows,
        vec![(
            "test_unsupported_field_sleepable".to_owned(),
            "failure".to_owned(),
            "attach to unsupported member test_2 of struct bpf_dummy_ops".to_owned()
        )]
    );
    assert!(!ok);
}

#[test]
fn verify_reports_the_rejection_and_fails() {
    let o = structops(&["-j", "verify", BAD_CTX]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let p = &v["programs"][0];
    assert_eq!(p["program"], "bad");
    assert_eq!(p["verdict"], "failure");
    assert_eq!(p["insns"], 2);
    assert_eq!(p["processed_insns"], 1);
    assert_eq!(p["error"], "invalid bpf_context access off=0 size=8");
    assert!(p.get("log").is_none());
    let err: serde_json::Value = serde_json::from_str(out.lines().nth(1).unwrap()).unwrap();
    assert_eq!(err["errno"], "EACCES");
    // Level 1: the instructions walked, before the table.
    let o = structops(&["verify", BAD_CTX, "--log-level", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.starts_with("--- bad ---\n"), "{text}");
    assert!(text.contains("0: (79) r0 = *(u64 *)(r1 +0)"), "{text}");
    assert!(!text.contains("processed 1 insns"), "{text}");
    assert!(
        stderr(&o).contains("rejected 1 of 1 programs"),
        "{}",
        stderr(&o)
    );
    let o = structops(&["verify", BAD_CTX, "--log-level", "3"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn prog_run_refuses_programs_the_verifier_rejects() {
    let pkt = temp_file("bad-pkt", &[0u8; 64]);
    let o = structops(&[
        "prog",
        "run",
        BAD_CTX,
        "--prog",
        "bad",
        "--data-in",
        pkt.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(pkt);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("load failed: EACCES"), "{err}");
    assert!(
        err.contains("invalid bpf_context access off=0 size=8"),
        "{err}"
    );
}

#[test]
fn bench_call_json_has_positive_figures_next_to_the_native_call() {
    let o = structops(&["bench", "call", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let reports = v.as_array().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["bench"], "call");
    let rows = reports[0]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert!(row["value"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(row["unit"], "ns/call");
    }
    let jit = rows
        .iter()
        .find(|r| r["name"] == "JIT entry point")
        .unwrap();
    let native = rows.iter().find(|r| r["reference"].is_null()).unwrap();
    assert_eq!(jit["reference"]["value"], native["value"]);
    assert!(jit["reference"]["target"].as_str().unwrap().contains("1.5"));
    assert!(jit["reference"]["met"].is_boolean());
}

#[test]
fn struct_ops_register_prints_the_transcript() {
    if !has_dummy_ops() {
        eprintln!("skipped: no bpf_dummy_ops in this host's vmlinux BTF");
        return;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/dummy_ops.bpf.o");
    for engine in ["interp", "jit"] {
        let o = structops(&["struct_ops", "register", file, "--engine", engine]);
        // bpf_dummy_ops exists for test runs: its registration is refused with
        // EOPNOTSUPP, by the update (.struct_ops) or the link (.struct_ops.link),
        // as the kernel refuses it.
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert_eq!(
            stdout(&o),
            "prog dummy_test_1: ok\n\
             prog dummy_test_2: ok\n\
             prog dummy_test_sleepable: ok\n\
             prog dummy_plain_test_1: ok\n\
             map dummy_ops: ops bpf_dummy_ops, link no, attach EOPNOTSUPP\n\
             map dummy_ops_lite: ops bpf_dummy_ops, link no, attach EOPNOTSUPP\n\
             map dummy_ops_link: ops bpf_dummy_ops, link yes, attach EOPNOTSUPP\n",
            "{engine}"
        );
    }
    let o = structops(&["-j", "struct_ops", "register", file]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(v["progs"].as_array().unwrap().len(), 4);
    assert_eq!(v["maps"][2]["name"], "dummy_ops_link");
    assert_eq!(v["maps"][2]["link"], true);
    assert_eq!(v["maps"][2]["attach"], "EOPNOTSUPP");
    // A program the verifier refuses: nothing loads (libbpf's rule), each program is
    // reported as it loads alone, and no map is attached.
    let fail = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/build/corpus/dummy_st_ops_fail.bpf.o"
    );
    if std::path::Path::new(fail).exists() {
        let o = structops(&["struct_ops", "register", fail]);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            stdout(&o),
            "prog test_unsupported_field_sleepable: EINVAL: attach to unsupported member \
             test_2 of struct bpf_dummy_ops\n"
        );
    }
    // A file that is not an object: a clear error, no panic.
    let o = structops(&["struct_ops", "register", "/etc/hostname"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
}
