//! Registers r0 to r10.

use std::fmt;

/// One of the eleven eBPF registers, r0 to r10.
///
/// r0 holds return values, r1 to r5 arguments, r6 to r9 are callee saved
/// and r10 is the read-only frame pointer. The newtype guarantees the number
/// is at most 10, so `regs[reg.index()]` on an 11-element array never fails.
/// Whether an instruction may *write* r10 is a verifier question, not an
/// encoding one, so `Reg::R10` is accepted everywhere.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(u8);

impl Reg {
    /// Return value and scratch register.
    pub const R0: Reg = Reg(0);
    /// First argument.
    pub const R1: Reg = Reg(1);
    /// Second argument.
    pub const R2: Reg = Reg(2);
    /// Third argument.
    pub const R3: Reg = Reg(3);
    /// Fourth argument.
    pub const R4: Reg = Reg(4);
    /// Fifth argument.
    pub const R5: Reg = Reg(5);
    /// Callee-saved register.
    pub const R6: Reg = Reg(6);
    /// Callee-saved register.
    pub const R7: Reg = Reg(7);
    /// Callee-saved register.
    pub const R8: Reg = Reg(8);
    /// Callee-saved register.
    pub const R9: Reg = Reg(9);
    /// Read-only frame pointer.
    pub const R10: Reg = Reg(10);
    /// Alias of [`Reg::R10`].
    pub const FP: Reg = Reg::R10;

    /// All registers in order.
    pub const ALL: [Reg; 11] = [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
        Reg::R10,
    ];

    /// The register numbered `n`, or `None` when `n > 10`.
    pub const fn new(n: u8) -> Option<Reg> {
        if n <= 10 { Some(Reg(n)) } else { None }
    }

    /// The register number, 0 to 10.
    pub const fn num(self) -> u8 {
        self.0
    }

    /// The register number as an index into an 11-element register file.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_checked() {
        assert_eq!(Reg::new(10), Some(Reg::FP));
        assert_eq!(Reg::new(11), None);
        assert_eq!(Reg::new(3).map(Reg::index), Some(3));
        assert_eq!(Reg::R7.to_string(), "r7");
        assert!(Reg::ALL.iter().enumerate().all(|(i, r)| r.index() == i));
    }
}
