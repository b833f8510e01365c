//! Placeholder: the native cubic is being written (issue 7).

use crate::types::TcpCongestionOps;

/// The native cubic (not written yet).
pub static CUBIC: TcpCongestionOps = TcpCongestionOps::empty("cubic", 0);
