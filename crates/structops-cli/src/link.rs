//! `structops link`: a running host's links (`--host`): list them, detach one, or move
//! a struct_ops link to a table of a new object — the atomic replacement
//! `bpf_link__update_map` makes, with calls in flight finishing on the old table.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{Value, json};
use structops_control::LinkEntry;

use crate::error::CliError;
use crate::live::{self, Conn, Sel};
use crate::output::Output;
use crate::prog;

/// `link` verbs.
#[derive(Debug, Subcommand)]
pub enum LinkCmd {
    /// List a host's links (`bpftool link show`).
    #[command(override_usage = "structops --host PATH link show [id N]")]
    Show {
        /// `[id N]`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
    },
    /// Detach a link (`bpftool link detach`): a struct_ops link unregisters its table;
    /// the link itself lives on, detached, until the host drops it.
    #[command(override_usage = "structops --host PATH link detach id N")]
    Detach {
        /// `id N`.
        #[arg(value_name = "SPEC")]
        words: Vec<String>,
    },
    /// Replace the table behind a struct_ops link with a struct_ops map of FILE (the
    /// only one, or MAP): the host loads FILE and updates the link atomically.
    #[command(override_usage = "structops --host PATH link update id N FILE[:MAP]")]
    Update {
        /// `id N FILE[:MAP]`.
        #[arg(value_name = "ARGS")]
        words: Vec<String>,
    },
}

/// Runs a `link` verb.
pub fn run(cmd: LinkCmd, host: Option<&Path>, out: &Output) -> Result<(), CliError> {
    let (command, words): (&'static str, &[String]) = match &cmd {
        LinkCmd::Show { words } => ("link show", words),
        LinkCmd::Detach { words } => ("link detach", words),
        LinkCmd::Update { words } => ("link update", words),
    };
    let Some(h) = host else {
        return Err(CliError::NeedsHost { command });
    };
    match cmd {
        LinkCmd::Show { .. } => {
            let spec = prog::spec(words, None, &["link", "show"])?;
            let sel = match (spec.file, spec.sel) {
                (None, sel @ (None | Some(Sel::Id(_)))) => sel,
                _ => return Err(id_usage(&["link", "show"])),
            };
            let mut conn = Conn::remote(h)?;
            let links = conn.links()?;
            let shown: Vec<&LinkEntry> = match &sel {
                Some(sel) => live::select(&links, sel, "link", |l| (l.id, ""))?,
                None => links.iter().collect(),
            };
            if out.json {
                out.json(&Value::Array(
                    shown.iter().map(|l| live::link_json(l)).collect(),
                ))
            } else {
                out.text(&shown.iter().map(|l| live::link_text(l)).collect::<String>())
            }
        }
        LinkCmd::Detach { .. } => {
            let id = link_id(words, &["link", "detach"])?;
            let mut conn = Conn::remote(h)?;
            conn.link_detach(id)?;
            if out.json {
                return crate::map::done(out);
            }
            out.text(&format!("Detached link {id}\n"))
        }
        LinkCmd::Update { .. } => {
            let command: &'static [&'static str] = &["link", "update"];
            let (Some(file), true) = (words.get(2), words.len() == 3) else {
                return Err(CliError::Usage {
                    command,
                    message: "expected `id N FILE[:MAP]`".into(),
                });
            };
            let id = link_id(&words[..2], command)?;
            let (file, map) = split_map(file);
            let bytes = crate::host::read(&file)?;
            let mut conn = Conn::remote(h)?;
            let regs = conn.link_update(id, bytes, file.display().to_string(), map)?;
            if out.json {
                let v = regs
                    .iter()
                    .map(|r| json!({"link_id": id, "map_id": r.map_id, "name": r.name}))
                    .collect();
                return out.json(&Value::Array(v));
            }
            let mut text = String::new();
            for r in &regs {
                text.push_str(&format!(
                    "Updated link {id}: map_id {} ({})\n",
                    r.map_id, r.name
                ));
            }
            out.text(&text)
        }
    }
}

fn id_usage(command: &'static [&'static str]) -> CliError {
    CliError::Usage {
        command,
        message: "name the link by `id N`".into(),
    }
}

fn link_id(words: &[String], command: &'static [&'static str]) -> Result<u32, CliError> {
    match prog::spec(words, None, command)? {
        live::Spec {
            file: None,
            sel: Some(Sel::Id(id)),
        } => Ok(id),
        _ => Err(id_usage(command)),
    }
}

/// `FILE.o:MAP` → (`FILE.o`, `Some(MAP)`); a path without `:` is the file alone. A
/// colon inside the path is kept when what follows it is not a plausible map name.
pub fn split_map(arg: &str) -> (PathBuf, Option<String>) {
    if let Some((file, map)) = arg.rsplit_once(':') {
        let plausible = !map.is_empty()
            && map
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if plausible && !file.is_empty() {
            return (PathBuf::from(file), Some(map.to_string()));
        }
    }
    (PathBuf::from(arg), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_map() {
        assert_eq!(split_map("a.o"), (PathBuf::from("a.o"), None));
        assert_eq!(
            split_map("dir/a.o:cubic"),
            (PathBuf::from("dir/a.o"), Some("cubic".into()))
        );
        assert_eq!(split_map("a.o:"), (PathBuf::from("a.o:"), None));
        assert_eq!(split_map(":x"), (PathBuf::from(":x"), None));
        assert_eq!(split_map("a:b/c.o"), (PathBuf::from("a:b/c.o"), None));
    }
}
