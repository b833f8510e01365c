//! Placeholder: the native dctcp is being written (issue 7).

use crate::types::TcpCongestionOps;

/// The native dctcp (not written yet).
pub static DCTCP: TcpCongestionOps = TcpCongestionOps::empty("dctcp", 0);
