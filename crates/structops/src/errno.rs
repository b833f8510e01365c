//! Linux error numbers, the error type of every kernel-face command.

use std::fmt;

/// A Linux error number, positive, as `bpf(2)` reports it in `errno`.
///
/// Every command of the kernel face returns `Result<_, Errno>` with the value the kernel
/// returns for the same request. `ENOTSUPP` (524) is the kernel-internal "not supported"
/// that `bpf(2)` leaks to user space; it is distinct from `EOPNOTSUPP` (95).
///
/// ```
/// use structops::{Errno, MapCreateAttr, MapType, Runtime};
///
/// let rt = Runtime::default();
/// let map = rt.map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 8))?;
/// let mut value = [0u8; 4];
/// let missing = rt.map_lookup_elem(&map, Some(&1u32.to_ne_bytes()), &mut value, 0);
/// assert_eq!(missing, Err(Errno::ENOENT));
/// assert_eq!((Errno::ENOENT.0, Errno::ENOENT.to_string()), (2, "ENOENT".to_string()));
/// assert_eq!(Errno::ENOTSUPP.name(), Some("ENOTSUPP"));
/// assert_eq!(Errno(4242).to_string(), "errno 4242");
/// # Ok::<(), Errno>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($(#[$doc:meta])* $name:ident = $val:literal,)*) => {
        impl Errno {
            $($(#[$doc])* pub const $name: Errno = Errno($val);)*

            /// The symbolic name (`"EINVAL"`), or `None` for a number this crate does not
            /// know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    /// Operation not permitted: a missing capability, or a write to a frozen map.
    EPERM = 1,
    /// No such entry (key, id, element).
    ENOENT = 2,
    /// No such process.
    ESRCH = 3,
    /// Argument list too long: a full map, an index past `max_entries`, an oversized value.
    E2BIG = 7,
    /// Bad file descriptor (handle number).
    EBADF = 9,
    /// Try again: a ring buffer without room.
    EAGAIN = 11,
    /// Out of memory, or over the runtime's memory limit.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address: a buffer shorter than the kernel would read or write.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// The element already exists.
    EEXIST = 17,
    /// No such device.
    ENODEV = 19,
    /// Invalid argument.
    EINVAL = 22,
    /// Too many open files: the descriptor table is at its limit (`RLIMIT_NOFILE`).
    EMFILE = 24,
    /// No space left (id space exhausted).
    ENOSPC = 28,
    /// Result out of range.
    ERANGE = 34,
    /// Function not implemented.
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// Too many levels of indirection.
    ELOOP = 40,
    /// Link has been severed: a struct_ops link updated after its detach.
    ENOLINK = 67,
    /// Protocol error: a `BPF_PSEUDO_MAP_IDX` load without `fd_array`.
    EPROTO = 71,
    /// Value too large for the data type.
    EOVERFLOW = 75,
    /// Not a socket: a local-storage key that names no host object.
    ENOTSOCK = 88,
    /// Operation not supported (the user-space `EOPNOTSUPP`).
    EOPNOTSUPP = 95,
    /// Operation in progress.
    EINPROGRESS = 115,
    /// The kernel-internal "not supported" (524), distinct from `EOPNOTSUPP`.
    ENOTSUPP = 524,
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl std::error::Error for Errno {}

impl From<structops_btf::Errno> for Errno {
    fn from(e: structops_btf::Errno) -> Errno {
        Errno(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert_eq!(Errno::ENOTSUPP.0, 524);
        assert_eq!(Errno::EOPNOTSUPP.0, 95);
        assert_ne!(Errno::ENOTSUPP, Errno::EOPNOTSUPP);
        assert_eq!(Errno::EINVAL.to_string(), "EINVAL");
        assert_eq!(Errno::E2BIG.to_string(), "E2BIG");
        assert_eq!(Errno(4242).to_string(), "errno 4242");
        assert_eq!(Errno::from(structops_btf::Errno::ELOOP), Errno::ELOOP);
        let e: Box<dyn std::error::Error> = Box::new(Errno::EPERM);
        assert_eq!(e.to_string(), "EPERM");
    }
}
