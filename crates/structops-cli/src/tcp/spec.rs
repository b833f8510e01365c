//! Congestion-control specs (`--cc`, `--swap-at`) and the BPF objects bundled in the
//! binary.

use std::fmt;
use std::path::PathBuf;

/// A native (Rust) congestion control of `structops-tcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Native {
    /// `reno`.
    Reno,
    /// `cubic`.
    Cubic,
    /// `dctcp`.
    Dctcp,
    /// `bbr`.
    Bbr,
}

impl Native {
    const ALL: [Native; 4] = [Native::Reno, Native::Cubic, Native::Dctcp, Native::Bbr];

    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Native::Reno => "reno",
            Native::Cubic => "cubic",
            Native::Dctcp => "dctcp",
            Native::Bbr => "bbr",
        }
    }
}

/// A BPF congestion control whose object is compiled into the binary (`bpf/NAME.bpf.o`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bundled {
    /// `bpf/cubic.bpf.o`, map `cubic`, table `so_cubic`.
    Cubic,
    /// `bpf/reno.bpf.o`, map `reno`, table `so_reno`.
    Reno,
    /// `bpf/dctcp.bpf.o`, map `dctcp`, table `so_dctcp`.
    Dctcp,
}

impl Bundled {
    const ALL: [Bundled; 3] = [Bundled::Cubic, Bundled::Reno, Bundled::Dctcp];

    /// The name after `bundled:`.
    pub fn name(self) -> &'static str {
        match self {
            Bundled::Cubic => "cubic",
            Bundled::Reno => "reno",
            Bundled::Dctcp => "dctcp",
        }
    }

    /// The object's path in the repository.
    pub fn path(self) -> String {
        format!("bpf/{}.bpf.o", self.name())
    }

    /// The struct_ops map to attach (named after the algorithm).
    pub fn map(self) -> &'static str {
        self.name()
    }

    /// The object's bytes: the committed `bpf/` objects are compiled into the binary, so
    /// it needs no files at run time.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Bundled::Cubic => include_bytes!("../../../../bpf/cubic.bpf.o"),
            Bundled::Reno => include_bytes!("../../../../bpf/reno.bpf.o"),
            Bundled::Dctcp => include_bytes!("../../../../bpf/dctcp.bpf.o"),
        }
    }
}

/// Where a flow group's congestion control comes from (`--cc`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CcSpec {
    /// `FILE.o[:MAP]`: a BPF object's struct_ops map (the only one when `MAP` is omitted).
    File {
        /// The object file.
        path: PathBuf,
        /// The struct_ops map.
        map: Option<String>,
    },
    /// `native:NAME`.
    Native(Native),
    /// `bundled:NAME`.
    Bundled(Bundled),
}

impl fmt::Display for CcSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CcSpec::File { path, map: None } => write!(f, "{}", path.display()),
            CcSpec::File { path, map: Some(m) } => write!(f, "{}:{m}", path.display()),
            CcSpec::Native(n) => write!(f, "native:{}", n.name()),
            CcSpec::Bundled(b) => write!(f, "bundled:{}", b.name()),
        }
    }
}

/// Is `s` a C identifier (a map name)?
fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c0| c0.is_ascii_alphabetic() || c0 == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `FILE.o[:MAP]`, `native:NAME` or `bundled:NAME`.
pub fn cc_spec(s: &str) -> Result<CcSpec, String> {
    if s.is_empty() {
        return Err("empty congestion-control spec".into());
    }
    if let Some(name) = s.strip_prefix("native:") {
        return Native::ALL
            .into_iter()
            .find(|n| n.name() == name)
            .map(CcSpec::Native)
            .ok_or_else(|| {
                format!("unknown native congestion control '{name}' (reno, cubic, dctcp, bbr)")
            });
    }
    if let Some(name) = s.strip_prefix("bundled:") {
        return Bundled::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .map(CcSpec::Bundled)
            .ok_or_else(|| {
                format!("unknown bundled congestion control '{name}' (cubic, reno, dctcp)")
            });
    }
    // `FILE:MAP` when what follows the last ':' is a map name; a path may hold ':' too.
    let (path, map) = match s.rsplit_once(':') {
        Some((p, m)) if !p.is_empty() && is_ident(m) => (p, Some(m.to_string())),
        Some((_, "")) => {
            return Err(format!("'{s}': empty map name after ':'"));
        }
        _ => (s, None),
    };
    Ok(CcSpec::File {
        path: PathBuf::from(path),
        map,
    })
}

/// `--swap-at TIME:SPEC`: at `at_ns`, link-update to `spec`'s struct_ops map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapSpec {
    /// Simulated time of the update.
    pub at_ns: u64,
    /// The new table: an object's map (`FILE.o[:MAP]` or `bundled:NAME`).
    pub spec: CcSpec,
}

/// Parses `TIME:FILE.o[:MAP]` (or `TIME:bundled:NAME`).
pub fn swap_spec(s: &str) -> Result<SwapSpec, String> {
    let Some((time, rest)) = s.split_once(':') else {
        return Err(format!(
            "'{s}': expected TIME:FILE.o[:MAP], e.g. 10s:new.bpf.o"
        ));
    };
    let at_ns = super::units::time_ns(time)?;
    let spec = cc_spec(rest)?;
    if let CcSpec::Native(_) = spec {
        return Err(format!(
            "'{s}': a live swap link-updates a BPF struct_ops map; give an object \
             (FILE.o[:MAP] or bundled:NAME), not a native congestion control"
        ));
    }
    Ok(SwapSpec { at_ns, spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(cc_spec("native:cubic"), Ok(CcSpec::Native(Native::Cubic)));
        assert_eq!(
            cc_spec("bundled:dctcp"),
            Ok(CcSpec::Bundled(Bundled::Dctcp))
        );
        assert_eq!(
            cc_spec("x.bpf.o"),
            Ok(CcSpec::File {
                path: "x.bpf.o".into(),
                map: None
            })
        );
        assert_eq!(
            cc_spec("dir/x.bpf.o:ca_update_1"),
            Ok(CcSpec::File {
                path: "dir/x.bpf.o".into(),
                map: Some("ca_update_1".into())
            })
        );
        // What follows ':' is a path, not a map name.
        assert_eq!(
            cc_spec("a:b/x.o"),
            Ok(CcSpec::File {
                path: "a:b/x.o".into(),
                map: None
            })
        );
        assert!(cc_spec("native:vegas").unwrap_err().contains("reno, cubic"));
        assert!(cc_spec("bundled:bbr").unwrap_err().contains("cubic, reno"));
        assert!(cc_spec("x.o:").unwrap_err().contains("empty map"));
        assert!(cc_spec("").is_err());
        for s in ["native:reno", "bundled:cubic", "x.o", "x.o:m"] {
            assert_eq!(cc_spec(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn swaps() {
        let s = swap_spec("10s:new.bpf.o:cubic").unwrap();
        assert_eq!(s.at_ns, 10_000_000_000);
        assert_eq!(
            s.spec,
            CcSpec::File {
                path: "new.bpf.o".into(),
                map: Some("cubic".into())
            }
        );
        assert!(swap_spec("new.bpf.o").is_err());
        assert!(swap_spec("10:new.bpf.o").unwrap_err().contains("unit"));
        assert!(swap_spec("1s:native:reno").unwrap_err().contains("native"));
        assert!(swap_spec("1s:bundled:reno").is_ok());
    }
}
