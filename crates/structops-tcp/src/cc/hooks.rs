//! What a congestion control asks of the TCP stack beyond its own socket fields: the
//! per-thread hooks through which native code reaches the host (the simulator) exactly
//! where a BPF program calls a helper.
//!
//! - [`send_ack`]: `__tcp_send_ack(sk, rcv_nxt)`, which DCTCP uses to send a delayed ACK
//!   for the prior CE state at once. A BPF congestion control reaches it through the
//!   `bpf_tcp_send_ack(tp, rcv_nxt)` helper, which the host implements with the same hook,
//!   so native and BPF code produce the same ACKs.
//!
//! A simulation runs on one thread (as [`crate::clock`]), so the hooks are thread-local:
//! several simulations may run at once on different threads, each with its own hooks.

use std::cell::Cell;

use crate::types::Sock;

/// The host's implementation of `__tcp_send_ack(sk, rcv_nxt)`: send a pure ACK now that
/// acknowledges `rcv_nxt` (not necessarily the socket's current `rcv_nxt`).
pub type SendAckFn = fn(sk: *mut Sock, rcv_nxt: u32);

thread_local! {
    static SEND_ACK: Cell<Option<SendAckFn>> = const { Cell::new(None) };
}

/// Installs this thread's [`SendAckFn`] (`None` removes it) and returns the one it
/// replaces.
pub fn set_send_ack(f: Option<SendAckFn>) -> Option<SendAckFn> {
    SEND_ACK.with(|c| c.replace(f))
}

/// Sends an ACK for `rcv_nxt` on `sk` through this thread's [`SendAckFn`]; without one
/// installed, nothing is sent (a congestion control driven outside a simulation).
///
/// The hook may read and write the socket, so callers hold no Rust reference to it
/// across this call.
pub fn send_ack(sk: *mut Sock, rcv_nxt: u32) {
    if let Some(f) = SEND_ACK.with(Cell::get) {
        f(sk, rcv_nxt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static SENT: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    fn record(_sk: *mut Sock, rcv_nxt: u32) {
        SENT.with(|s| s.borrow_mut().push(rcv_nxt));
    }

    #[test]
    fn send_ack_reaches_the_installed_hook_only() {
        let sk = std::ptr::null_mut();
        send_ack(sk, 1);
        assert!(set_send_ack(Some(record)).is_none());
        send_ack(sk, 7);
        assert!(set_send_ack(None).is_some());
        send_ack(sk, 9);
        assert_eq!(SENT.with(|s| s.borrow().clone()), vec![7]);
    }
}
