//! Placeholder: the native bbr is being written (issue 7).

use crate::types::TcpCongestionOps;

/// The native bbr (not written yet).
pub static BBR: TcpCongestionOps = TcpCongestionOps::empty("bbr", 0);
