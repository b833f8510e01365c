//! A minimal logger for long-running commands (`tcp serve`): the `log` records of the
//! libraries — the control socket's refusals among them — as lines on stderr,
//! `structops: LEVEL: message`. `STRUCTOPS_LOG` sets the level (`error`, `warn`,
//! `info`, the default, `debug`, `trace` or `off`).

use std::io::Write as _;

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            // A closed stderr loses the line; logging never fails the command.
            let _ = writeln!(
                std::io::stderr().lock(),
                "structops: {}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The level `STRUCTOPS_LOG` names, or `info`.
fn level_from(var: Option<&str>) -> log::LevelFilter {
    var.and_then(|v| v.trim().parse().ok())
        .unwrap_or(log::LevelFilter::Info)
}

/// Installs the stderr logger (once per process; later calls do nothing).
pub fn init() {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level_from(std::env::var("STRUCTOPS_LOG").ok().as_deref()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_from(None), log::LevelFilter::Info);
        assert_eq!(level_from(Some("debug")), log::LevelFilter::Debug);
        assert_eq!(level_from(Some("OFF")), log::LevelFilter::Off);
        assert_eq!(level_from(Some("loud")), log::LevelFilter::Info);
    }
}
