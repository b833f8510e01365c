//! The CLI's error type: every failure names the step that failed and the file it was
//! working on, and carries a hint where one helps.

use std::io;
use std::path::PathBuf;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading an input file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The object file could not be parsed.
    #[error("parsing object {path}: {source}")]
    Object {
        /// The file.
        path: String,
        /// The loader's error.
        source: Box<structops_obj::Error>,
    },
    /// Relocating the object against the host failed.
    #[error("relocating {path}: {source}")]
    Relocate {
        /// The file.
        path: String,
        /// The loader's error.
        source: Box<structops_obj::Error>,
    },
    /// A BTF blob could not be parsed.
    #[error("parsing BTF of {path}: {source}")]
    Btf {
        /// The file.
        path: String,
        /// The BTF error.
        source: structops_btf::BtfError,
    },
    /// Dumping BTF failed.
    #[error("dumping BTF of {path}: {source}")]
    Dump {
        /// The file.
        path: String,
        /// The dump error.
        source: structops_btf::dump::DumpError,
    },
    /// The file is not a readable ELF object.
    #[error("reading ELF {path}: {source}")]
    Elf {
        /// The file.
        path: String,
        /// The ELF reader's error.
        source: object::Error,
    },
    /// The object has no BTF.
    #[error("{path} has no .BTF section")]
    NoBtf {
        /// The file.
        path: String,
    },
    /// A named program does not exist.
    #[error("no program named '{name}' in {path}")]
    NoSuchProgram {
        /// The requested name.
        name: String,
        /// The file.
        path: String,
        /// The programs that do exist.
        available: Vec<String>,
    },
    /// A named type does not exist.
    #[error("no type named '{name}' in the BTF of {path}")]
    NoSuchType {
        /// The requested name.
        name: String,
        /// The file.
        path: String,
    },
    /// The decoded program is malformed.
    #[error("decoding program '{name}': {source}")]
    Decode {
        /// Program name.
        name: String,
        /// The decode error.
        source: structops_isa::DecodeError,
    },
    /// A named map does not exist (or was not created).
    #[error("no map named '{name}' in {path}")]
    NoSuchMap {
        /// The requested name.
        name: String,
        /// The file.
        path: String,
        /// The maps that do exist.
        available: Vec<String>,
    },
    /// Loading an object into the in-process runtime failed.
    #[error("loading into the in-process runtime: {0}")]
    Load(Box<structops::loader::LoadError>),
    /// A runtime command failed.
    #[error("{step}: {errno}")]
    Runtime {
        /// What the CLI was doing.
        step: String,
        /// The runtime's answer.
        errno: structops::Errno,
    },
    /// `prog_test_run` failed.
    #[error("running program '{prog}': {errno}{}", fault.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    Run {
        /// The program.
        prog: String,
        /// The runtime's answer.
        errno: structops::Errno,
        /// Why a checked run stopped, when it did.
        fault: Option<String>,
    },
    /// The request needs something this build does not have.
    #[error("not supported: {what}")]
    Unsupported {
        /// What, and what to do instead.
        what: String,
    },
    /// `verify`: the verifier rejected some of the programs.
    #[error("the verifier rejected {rejected} of {total} programs")]
    Rejected {
        /// Programs rejected.
        rejected: usize,
        /// Programs verified in all.
        total: usize,
    },
    /// `struct_ops register`: programs that did not load or maps that did not attach.
    #[error("{progs} programs did not load, {maps} struct_ops maps did not attach")]
    NotRegistered {
        /// Programs that failed to load.
        progs: usize,
        /// Maps whose attach failed.
        maps: usize,
        /// The first failure's errno name.
        errno: &'static str,
    },
    /// A benchmark could not be set up (`structops bench`).
    #[error("benchmark: {0}")]
    Bench(#[from] structops_bench::BenchError),
    /// A usage error found after parsing (arguments that contradict each other); `main`
    /// reports it as clap does, with exit status 2.
    #[error("{message}")]
    Usage {
        /// The subcommand path (`["tcp", "simulate"]`), for its usage line.
        command: &'static [&'static str],
        /// What is wrong.
        message: String,
    },
    /// The TCP host refused something (`tcp simulate`).
    #[error("{step}: {source}")]
    Tcp {
        /// What the CLI was doing.
        step: String,
        /// The host's error.
        source: Box<structops_tcp::HostError>,
    },
    /// The simulator refused the scenario.
    #[error("simulation: {source}")]
    Sim {
        /// The simulator's error.
        source: structops_tcp::sim::SimError,
    },
    /// A plot could not be written.
    #[error("{0}")]
    Plot(crate::tcp::PlotError),
    /// Writing output failed.
    #[error("writing output: {0}")]
    Write(io::Error),
    /// Connecting to a host's control socket failed.
    #[error("connecting to host {path}: {source}")]
    Connect {
        /// The socket path.
        path: String,
        /// The client's error.
        source: Box<structops_control::ClientError>,
    },
    /// The host answered a request with an error.
    #[error("{what}: {} failed: {}", step_name(error.step), error.message)]
    Remote {
        /// What the CLI asked for.
        what: String,
        /// The host's answer.
        error: structops_control::ControlError,
    },
    /// Talking to a host failed (a broken connection or frame, an unexpected answer).
    #[error("{what}: {source}")]
    Protocol {
        /// What the CLI asked for.
        what: String,
        /// The client's error.
        source: Box<structops_control::ClientError>,
    },
    /// The command changes a running host, so it needs `--host`.
    #[error("{command} works on a running host: it needs --host PATH")]
    NeedsHost {
        /// The command (`map update`).
        command: &'static str,
    },
    /// An object selector that does not match anything (`id 7`, `name cubic`).
    #[error("{kind} {selector}: not found")]
    NotFound {
        /// `prog`, `map`, `link`, `struct_ops`, `btf`.
        kind: &'static str,
        /// How it was named.
        selector: String,
    },
    /// stdout was closed by the reader (`| head`): not an error.
    #[error("broken pipe")]
    BrokenPipe,
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Write(e)
        }
    }
}

/// The errno name of a client-side failure.
fn client_errno(e: &structops_control::ClientError) -> &'static str {
    use structops_control::ClientError;
    match e {
        ClientError::Remote(r) => r.errno().name().unwrap_or("EINVAL"),
        ClientError::Connect(io)
        | ClientError::Frame(structops_control::frame::FrameError::Io(io)) => match io.kind() {
            io::ErrorKind::NotFound => "ENOENT",
            io::ErrorKind::PermissionDenied => "EACCES",
            io::ErrorKind::ConnectionRefused => "ECONNREFUSED",
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "ETIMEDOUT",
            _ => "EIO",
        },
        _ => "EPROTO",
    }
}

/// How a protocol step reads in a message.
fn step_name(step: structops_control::Step) -> &'static str {
    use structops_control::Step;
    match step {
        Step::Frame => "framing the request",
        Step::Decode => "decoding the request",
        Step::Access => "access control",
        Step::Accept => "accepting the connection",
        Step::Lookup => "finding the object",
        Step::Map => "the map command",
        Step::Open => "opening the object",
        Step::Load => "loading the object",
        Step::Attach => "attaching its struct_ops maps",
        Step::LinkUpdate => "updating the link",
        Step::LinkDetach => "detaching the link",
        Step::Unregister => "unregistering",
        Step::Status => "reading the host status",
        Step::Prog => "reading the program",
        Step::Btf => "reading the BTF",
        Step::Run => "the test run",
        Step::Internal => "the host's request handler",
    }
}

fn remote_hint(e: &structops_control::ControlError) -> Option<String> {
    use structops::Errno;
    use structops_control::Step;
    match (e.step, e.errno()) {
        (Step::Access, _) => Some(
            "the host allows only the uids in its allow-list (by default its own), and \
             read-only uids cannot change anything; run as an allowed user"
                .into(),
        ),
        (Step::Accept, _) => Some("the host serves a limited number of connections: retry".into()),
        (Step::Attach, Errno::EEXIST) => Some(
            "an ops table of that name is already registered: unregister it, or use \
             `link update` to replace it in place"
                .into(),
        ),
        (Step::LinkUpdate, Errno::EINVAL) => Some(
            "a link update needs a table of the same ops type (and, for \
             tcp_congestion_ops, the same .name)"
                .into(),
        ),
        (Step::Load, _) => {
            Some("verify the object first: `structops verify FILE` prints the verifier log".into())
        }
        (Step::Map, Errno::EINVAL) => Some(
            "the map refused the command: array elements cannot be deleted, and flags \
             must suit the map type"
                .into(),
        ),
        (Step::Map, Errno::ENOENT) => Some("no element has that key".into()),
        (Step::Lookup, Errno::ENOENT) => {
            Some("no object has that id: list them with `structops --host PATH <noun> show`".into())
        }
        (Step::Frame, Errno::E2BIG) => Some("the reply is over the frame limit (16 MiB)".into()),
        _ => None,
    }
}

/// The errno name of a loader error.
fn load_errno(e: &structops::loader::LoadError) -> &'static str {
    match e {
        structops::loader::LoadError::MapCreate { errno, .. }
        | structops::loader::LoadError::MapInit { errno, .. }
        | structops::loader::LoadError::ProgLoad { errno, .. }
        | structops::loader::LoadError::Descriptor { errno, .. }
        | structops::loader::LoadError::Attach { errno, .. } => errno.name().unwrap_or("EINVAL"),
        _ => "EINVAL",
    }
}

impl CliError {
    /// The Linux errno name that best describes the failure, as bpftool prints it.
    pub fn errno_name(&self) -> &'static str {
        match self {
            CliError::Read { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => "ENOENT",
                io::ErrorKind::PermissionDenied => "EACCES",
                _ => "EIO",
            },
            CliError::NoSuchProgram { .. }
            | CliError::NoSuchType { .. }
            | CliError::NoSuchMap { .. } => "ENOENT",
            CliError::Runtime { errno, .. } | CliError::Run { errno, .. } => {
                errno.name().unwrap_or("EINVAL")
            }
            CliError::Load(e) => load_errno(e),
            CliError::Unsupported { .. } => "EOPNOTSUPP",
            CliError::Tcp { source, .. } => match source.as_ref() {
                structops_tcp::HostError::Setup { errno, .. }
                | structops_tcp::HostError::NotALink { errno, .. } => {
                    errno.name().unwrap_or("EINVAL")
                }
                structops_tcp::HostError::Load { source, .. } => load_errno(source),
                _ => "EINVAL",
            },
            CliError::Plot(_) => "EIO",
            CliError::Rejected { .. } => "EACCES",
            CliError::NotRegistered { errno, .. } => errno,
            CliError::NoBtf { .. } => "ENOENT",
            CliError::Write(_) | CliError::BrokenPipe => "EIO",
            CliError::Connect { source, .. } | CliError::Protocol { source, .. } => {
                client_errno(source)
            }
            CliError::Remote { error, .. } => error.errno().name().unwrap_or("EINVAL"),
            CliError::NotFound { .. } => "ENOENT",
            _ => "EINVAL",
        }
    }

    /// A hint for the user, when there is something useful to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::NoSuchProgram { available, .. } if !available.is_empty() => {
                Some(format!("programs: {}", available.join(", ")))
            }
            CliError::NoSuchProgram { .. } => Some("the object has no programs".into()),
            CliError::NoSuchMap { available, .. } if !available.is_empty() => {
                Some(format!("maps: {}", available.join(", ")))
            }
            CliError::Load(e) => match e.as_ref() {
                structops::loader::LoadError::ProgLoad { log, .. } if !log.is_empty() => {
                    Some(format!("program load log:\n{}", log.trim_end()))
                }
                structops::loader::LoadError::Relocate { .. } => Some(
                    "relocation uses the host BTF (--btf, default /sys/kernel/btf/vmlinux)".into(),
                ),
                _ => None,
            },
            CliError::NoBtf { .. } => Some("compile with `clang -g` to emit BTF".into()),
            CliError::Tcp { source, .. } => match source.as_ref() {
                structops_tcp::HostError::Load {
                    source: structops::loader::LoadError::Attach { errno, .. },
                    ..
                } if *errno == structops::Errno::EEXIST => Some(
                    "a congestion control of that name is already registered (the native \
                     reno, cubic, dctcp, bbr, or another --cc group's table): give the \
                     table another .name"
                        .into(),
                ),
                structops_tcp::HostError::Load {
                    source: structops::loader::LoadError::ProgLoad { log, .. },
                    ..
                } if !log.is_empty() => Some(format!("program load log:\n{}", log.trim_end())),
                structops_tcp::HostError::NoStructOps { .. } => Some(
                    "the object needs a SEC(\".struct_ops\") or SEC(\".struct_ops.link\") \
                     tcp_congestion_ops variable; name it with FILE.o:MAP when there are several"
                        .into(),
                ),
                _ => None,
            },
            CliError::Connect { .. } => Some(
                "is a host serving there? A host calls Runtime::serve (structops_control::Serve); \
                 the demo host is `structops tcp serve --socket PATH`"
                    .into(),
            ),
            CliError::Remote { error, .. } => remote_hint(error),
            CliError::NeedsHost { .. } => Some(
                "without --host, commands load FILE into a runtime inside this process, \
                 which ends with the command"
                    .into(),
            ),
            CliError::NotFound { kind, .. } => Some(format!(
                "list them with `structops [--host PATH] {kind} show`"
            )),
            CliError::Relocate { .. } => Some(
                "relocation uses the host BTF (--btf, default /sys/kernel/btf/vmlinux) and the \
                 kernel configuration (/boot/config-$(uname -r) or /proc/config.gz)"
                    .into(),
            ),
            _ => None,
        }
    }

    /// Prints the error on stderr (text) or stdout (JSON, like bpftool's `{"error": ...}`).
    pub fn report(&self, json: bool) {
        if json {
            let v = serde_json::json!({
                "error": self.to_string(),
                "errno": self.errno_name(),
                "hint": self.hint(),
            });
            println!("{v}");
        } else {
            eprintln!("Error: {self} ({})", self.errno_name());
            if let Some(h) = self.hint() {
                eprintln!("Hint: {h}");
            }
        }
    }
}
