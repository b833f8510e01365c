//! `structops tcp serve` end to end: the binary runs the simulator behind a control
//! socket, and this test process drives it as `structops --host PATH` would — register
//! a congestion control (the flows switch to it), read its counters, link-update it
//! (the flows re-initialise on the new table), unregister it (they switch back), stop
//! the server with SIGTERM (the socket file goes away, exit 0).
//!
//! Every wait is bounded; the server is killed if the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;
use structops_control::{ControlClient, Target};

const WAIT: Duration = Duration::from_secs(60);

fn bpf(name: &str) -> (Vec<u8>, String) {
    let path = format!("{}/../../bpf/{name}", env!("CARGO_MANIFEST_DIR"));
    (std::fs::read(&path).unwrap(), path)
}

/// A running `tcp serve`, killed (and its directory removed) when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    lines: Receiver<String>,
    /// The server's stderr, line by line (its log).
    errs: Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_lines(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Starts `structops tcp serve --socket DIR/ctl.sock ARGS..` and waits for its ready line.
fn serve(tag: &str, args: &[&str]) -> Server {
    let dir = std::env::temp_dir().join(format!("structops-serve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("ctl.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(["tcp", "serve", "--socket"])
        .arg(&socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(child.stdout.take().unwrap());
    let errs = read_lines(child.stderr.take().unwrap());
    let server = Server {
        child,
        dir,
        socket,
        lines,
        errs,
    };
    let ready = server.lines.recv_timeout(WAIT).expect("no ready line");
    assert_eq!(ready, format!("serving {}", server.socket.display()));
    // Not `socket.exists()` here: a short --duration at --speed max may already be over.
    server
}

/// Polls the status until `ok` holds for it, or fails after [`WAIT`].
fn wait_status(c: &mut ControlClient, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = c.status().unwrap();
        if ok(&s) {
            return s;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn flows(s: &Value) -> &Vec<Value> {
    s["flows"].as_array().unwrap()
}

fn all_flows(s: &Value, f: impl Fn(&Value) -> bool) -> bool {
    !flows(s).is_empty() && flows(s).iter().all(f)
}

fn map_id(c: &mut ControlClient, name: &str) -> u32 {
    let maps = c.list_maps().unwrap();
    let hits: Vec<u32> = maps
        .iter()
        .filter(|m| m.name == name)
        .map(|m| m.id)
        .collect();
    assert_eq!(hits.len(), 1, "one map {name} in {maps:?}");
    hits[0]
}

fn counter(c: &mut ControlClient, map: u32, key: u32) -> u64 {
    let v = c.map_lookup(map, &key.to_ne_bytes()).unwrap();
    u64::from_ne_bytes(v[..8].try_into().unwrap())
}

/// Waits until counter `key` of `map` exceeds `than`.
fn wait_counter_above(c: &mut ControlClient, map: u32, key: u32, than: u64) -> u64 {
    let start = Instant::now();
    loop {
        let v = counter(c, map, key);
        if v > than {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "counter {key} of map {map} stuck at {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the process to exit; its status.
fn wait_exit(server: &mut Server) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            return st;
        }
        assert!(start.elapsed() < WAIT, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn register_link_update_unregister_and_stop() {
    let mut server = serve(
        "e2e",
        &[
            "--speed", "20", "--flows", "3", "--bw", "20Mbit", "--rtt", "20ms",
        ],
    );
    let mut c = ControlClient::connect(&server.socket).unwrap();

    // The startup congestion control: the bundled BPF CUBIC.
    let s = wait_status(&mut c, "the flows to start", |s| {
        all_flows(s, |f| f["started"] == true)
    });
    assert_eq!(s["fallback_cc"], "so_cubic");
    assert_eq!(s["cc"], "so_cubic");
    assert_eq!(flows(&s).len(), 3);
    assert!(all_flows(&s, |f| f["cc"] == "so_cubic"));
    let cubic_map = flows(&s)[0]["map_id"].as_u64().unwrap();
    assert!(s["speed"].as_f64() == Some(20.0));
    let s = wait_status(&mut c, "goodput", |s| {
        s["total_goodput_mbps"].as_f64().is_some_and(|g| g > 10.0)
    });
    // Goodput is what the receivers deliver in order. Over a one-second window that is
    // at most the bottleneck's 20 Mbit/s plus what was already in the network when the
    // window began (segments held out of order behind a loss are delivered at once when
    // the hole is filled): one BDP and the buffer, 2 x 50 kB = 0.8 Mbit here.
    assert!(
        s["total_goodput_mbps"].as_f64().unwrap() <= 20.8,
        "goodput cannot exceed the bottleneck and what the network holds: {s:#}"
    );

    // Register so_demo: every flow switches to it.
    let (bytes, path) = bpf("demo_cc.bpf.o");
    let reg = c.struct_ops_register(&bytes, &path, None).unwrap();
    assert_eq!(reg.len(), 1);
    assert_eq!(reg[0].name, "demo");
    let link = reg[0]
        .link_id
        .expect("a .struct_ops.link map registers through a link");
    let demo_map = reg[0].map_id;
    let s = wait_status(&mut c, "the switch to so_demo", |s| {
        all_flows(s, |f| {
            f["cc"] == "so_demo" && f["map_id"].as_u64() == Some(u64::from(demo_map))
        })
    });
    assert_eq!(s["cc"], "so_demo");
    assert!(
        s["available"]
            .as_array()
            .unwrap()
            .contains(&"so_demo".into())
    );

    // Its counters: init once per socket (both ends of each flow), cong_avoid growing.
    let calls = map_id(&mut c, "demo_calls");
    assert_eq!(
        counter(&mut c, calls, 0),
        6,
        "init on 3 senders and 3 receivers"
    );
    let ca = wait_counter_above(&mut c, calls, 2, 0);
    wait_counter_above(&mut c, calls, 2, ca);

    // Link update to the fixed-window so_demo: same name, new table, every flow on it
    // with 10 packets in flight.
    let (bytes, path) = bpf("demo_fixed.bpf.o");
    let upd = c.link_update(link, &bytes, &path, None).unwrap();
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].link_id, Some(link));
    let fixed_map = upd[0].map_id;
    assert_ne!(fixed_map, demo_map);
    let s = wait_status(&mut c, "the flows on the updated table", |s| {
        all_flows(s, |f| {
            f["cc"] == "so_demo"
                && f["map_id"].as_u64() == Some(u64::from(fixed_map))
                && f["cwnd"] == 10
        })
    });
    assert_eq!(s["cc"], "so_demo");
    let fixed_calls = map_id(&mut c, "fixed_calls");
    let n = wait_counter_above(&mut c, fixed_calls, 2, 0);
    wait_counter_above(&mut c, fixed_calls, 2, n);
    // Each sender re-initialised once, at its next call; a receiver (no hook calls
    // without ECN) only when it calls one.
    let inits = counter(&mut c, fixed_calls, 0);
    assert!((3..=6).contains(&inits), "{inits} inits");
    // 3 flows × 10 packets per 20 ms is 17.4 Mbit/s of payload at most.
    wait_status(&mut c, "the fixed window's goodput", |s| {
        s["total_goodput_mbps"]
            .as_f64()
            .is_some_and(|g| g > 10.0 && g < 17.5)
    });

    // The window is a .data global: writing it through the socket changes the flows.
    let data = map_id(&mut c, "demo_fix.data");
    assert_eq!(
        c.map_lookup(data, &0u32.to_ne_bytes()).unwrap(),
        10u32.to_ne_bytes()
    );
    c.map_update(data, &0u32.to_ne_bytes(), &16u32.to_ne_bytes(), 0)
        .unwrap();
    wait_status(&mut c, "the flows at the new window", |s| {
        all_flows(s, |f| f["cwnd"] == 16)
    });

    // Unregister: back to the startup congestion control.
    c.struct_ops_unregister(Target::Name("demo".into()))
        .unwrap();
    let s = wait_status(&mut c, "the switch back to so_cubic", |s| {
        all_flows(s, |f| {
            f["cc"] == "so_cubic" && f["map_id"].as_u64() == Some(cubic_map)
        })
    });
    assert_eq!(s["cc"], "so_cubic");
    assert!(
        !s["available"]
            .as_array()
            .unwrap()
            .contains(&"so_demo".into())
    );
    drop(c);

    // SIGTERM: a clean stop.
    let pid = libc::pid_t::try_from(server.child.id()).unwrap();
    // SAFETY: kill has no memory preconditions; the pid is our live child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let st = wait_exit(&mut server);
    assert!(st.success(), "{st:?}");
    assert!(!server.socket.exists(), "the socket file is removed");
    let last = server.lines.recv_timeout(WAIT).unwrap();
    assert!(last.starts_with("stopped (signal) after "), "{last}");
}

#[test]
fn read_only_peers_see_the_status_but_cannot_register() {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let ro = format!("{me}:ro");
    let mut server = serve(
        "ro",
        &[
            "--speed",
            "max",
            "--flows",
            "1",
            "--bw",
            "10Mbit",
            "--allow-uid",
            &ro,
            "--cc",
            "native:reno",
        ],
    );
    let mut c = ControlClient::connect(&server.socket).unwrap();
    let s = wait_status(&mut c, "the flow to start", |s| {
        all_flows(s, |f| {
            f["started"] == true && f["cc"] == "reno" && f["map_id"].is_null()
        })
    });
    assert_eq!(s["speed"], "max");
    let (bytes, path) = bpf("demo_cc.bpf.o");
    let e = c.struct_ops_register(&bytes, &path, None).unwrap_err();
    assert_eq!(e.errno(), Some(structops::Errno::EPERM), "{e}");
    // The refusal is logged on the server's stderr.
    let start = Instant::now();
    let mut log = String::new();
    while !log.contains("refused a write by a read-only peer") {
        match server.errs.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => log.push_str(&format!("{line}\n")),
            Err(_) => assert!(start.elapsed() < WAIT, "no refusal logged: {log}"),
        }
    }
    assert!(log.contains("structops: warn: control socket:"), "{log}");
    // Simulated time runs far ahead of the wall clock at --speed max.
    let s = wait_status(&mut c, "time to pass", |s| {
        s["sim_time_s"].as_f64().unwrap() > 2.0 * s["wall_s"].as_f64().unwrap()
    });
    assert!(s["events"].as_u64().unwrap() > 0);
    drop(c);
    let pid = libc::pid_t::try_from(server.child.id()).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert!(wait_exit(&mut server).success());
    assert!(!server.socket.exists());
}

#[test]
fn a_duration_ends_the_run_and_an_existing_socket_is_refused() {
    let mut server = serve(
        "dur",
        &[
            "--speed",
            "max",
            "--flows",
            "2",
            "--bw",
            "10Mbit",
            "--duration",
            "2s",
        ],
    );
    assert!(wait_exit(&mut server).success());
    let last = server.lines.recv_timeout(WAIT).unwrap();
    assert!(
        last.starts_with("stopped (end of --duration) after 2s simulated"),
        "{last}"
    );
    assert!(!server.socket.exists());

    // A path that exists is not replaced.
    std::fs::write(&server.socket, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(["tcp", "serve", "--duration", "1s", "--socket"])
        .arg(&server.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("EEXIST"),
        "{err}"
    );
    assert!(Path::new(&server.socket).exists(), "left alone");
}

/// `structops --host PATH -j ARGS..` from a separate process: its JSON output.
fn cli(server: &Server, args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_structops"))
        .arg("--host")
        .arg(&server.socket)
        .arg("-j")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "structops {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Polls `structops --host PATH status` until `ok` holds, or fails after [`WAIT`].
fn cli_wait_status(server: &Server, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = cli(server, &["status"]);
        if ok(&s) {
            return s;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for {what}: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `u64` value of key `key` of the map named `map`, read with `map lookup`.
fn cli_counter(server: &Server, map: &str, key: u8) -> u64 {
    let key = key.to_string();
    let v = cli(
        server,
        &["map", "lookup", "name", map, "key", &key, "0", "0", "0"],
    );
    v["formatted"]["value"].as_u64().unwrap()
}

/// The same end-to-end run as above, but every step is a `structops --host` command:
/// the demo, as a user types it.
#[test]
fn the_cli_drives_a_serving_host() {
    let mut server = serve("cli", &["--flows", "2", "--bw", "20Mbit", "--speed", "4"]);
    assert!(server.socket.exists(), "no socket file once serving");
    let s = cli_wait_status(&server, "flows on so_cubic", |s| {
        all_flows(s, |f| f["cc"] == "so_cubic" && !f["map_id"].is_null())
    });
    // The flows run the bundled CUBIC's struct_ops map.
    let shown = cli(&server, &["struct_ops", "show", "name", "cubic"]);
    let cubic_map = shown[0]["id"].clone();
    assert!(all_flows(&s, |f| f["map_id"] == cubic_map), "{s:#} {shown}");
    // register: the flows switch to so_demo, whose counters grow.
    let reg = cli(&server, &["struct_ops", "register", "bpf/demo_cc.bpf.o"]);
    let link = reg[0]["link_id"].as_u64().unwrap();
    let demo_map = reg[0]["id"].clone();
    assert_eq!(reg[0]["kernel_struct_ops"], "tcp_congestion_ops");
    cli_wait_status(&server, "flows on so_demo", |s| {
        all_flows(s, |f| f["cc"] == "so_demo" && f["map_id"] == demo_map)
    });
    let links = cli(&server, &["link", "show"]);
    assert!(
        links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == link && l["map_id"] == demo_map),
        "{links}"
    );
    let first = cli_counter(&server, "demo_calls", 2);
    let start = Instant::now();
    while cli_counter(&server, "demo_calls", 2) <= first {
        assert!(start.elapsed() < WAIT, "cong_avoid count stuck at {first}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // link update: the same name, a fixed window of 10 from demo_fixed's .data.
    let link_s = link.to_string();
    let upd = cli(
        &server,
        &["link", "update", "id", &link_s, "bpf/demo_fixed.bpf.o"],
    );
    let fixed_map = upd[0]["map_id"].clone();
    assert_ne!(fixed_map, demo_map);
    cli_wait_status(&server, "flows on demo_fixed with cwnd 10", |s| {
        all_flows(s, |f| f["map_id"] == fixed_map && f["cwnd"] == 10)
    });
    // A map update reaches the running program: the window follows fixed_cwnd.
    let done = cli(
        &server,
        &[
            "map",
            "update",
            "name",
            "demo_fix.data",
            "key",
            "0",
            "0",
            "0",
            "0",
            "value",
            "16",
            "0",
            "0",
            "0",
        ],
    );
    assert_eq!(done, Value::Null);
    cli_wait_status(&server, "cwnd 16", |s| all_flows(s, |f| f["cwnd"] == 16));
    // unregister by link id: the flows go back to so_cubic.
    assert_eq!(
        cli(&server, &["struct_ops", "unregister", "id", &link_s]),
        Value::Null
    );
    cli_wait_status(&server, "flows back on so_cubic", |s| {
        all_flows(s, |f| f["cc"] == "so_cubic" && f["map_id"] == cubic_map)
    });
    let shown = cli(&server, &["struct_ops", "show"]);
    assert!(
        !shown
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "demo"),
        "{shown}"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    assert!(wait_exit(&mut server).success());
    assert!(!server.socket.exists());
}
