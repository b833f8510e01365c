//! A scalar register as the kernel's verifier log prints it at log level 2:
//! `5`, `-1`, `0xffffffff`, `scalar()`,
//! `scalar(id=2,smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))`
//! (`print_reg_state` and `print_scalar_ranges` of `kernel/bpf/log.c`).

use std::fmt;

use crate::scalar::ScalarValue;

/// Numbers in `0..=65535` print in decimal, larger ones in hex
/// (`verbose_unum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unum(pub u64);

impl fmt::Display for Unum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 <= u64::from(u16::MAX) {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// Numbers in `-32768..=32767` print in decimal, others as the hex of
/// their 64-bit pattern (`verbose_snum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snum(pub i64);

impl fmt::Display for Snum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_snum_decimal(self.0) {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:#x}", self.0 as u64)
        }
    }
}

const fn is_snum_decimal(n: i64) -> bool {
    n >= i16::MIN as i64 && n <= i16::MAX as i64
}

/// Writes the bounds that are not at their type's limit, joining equal
/// values as `smax=umax=255` (`print_scalar_ranges`). `sep` is written
/// before the first entry and becomes `","` once something is written.
///
/// # Errors
///
/// Only those of the underlying writer.
pub fn write_scalar_ranges(
    out: &mut dyn fmt::Write,
    v: &ScalarValue,
    sep: &mut &'static str,
) -> fmt::Result {
    // 32-bit signed bounds print like their 64-bit sign extension when they
    // print in decimal, but as 32-bit patterns when in hex, so that -2 and
    // -2 pair up while 0xfffffffe never pairs with 0xfffffffffffffffe.
    let s32 = |x: i32| -> u64 {
        if is_snum_decimal(i64::from(x)) {
            i64::from(x) as u64
        } else {
            u64::from(x as u32)
        }
    };
    let mut entries = [
        ("smin", v.smin as u64, v.smin == i64::MIN),
        ("smax", v.smax as u64, v.smax == i64::MAX),
        ("umin", v.umin, v.umin == 0),
        ("umax", v.umax, v.umax == u64::MAX),
        ("smin32", s32(v.s32_min), v.s32_min == i32::MIN),
        ("smax32", s32(v.s32_max), v.s32_max == i32::MAX),
        ("umin32", u64::from(v.u32_min), v.u32_min == 0),
        ("umax32", u64::from(v.u32_max), v.u32_max == u32::MAX),
    ];
    let signed_negative = |name: &str, val: u64| name.starts_with('s') && (val as i64) < 0;
    for i in 0..entries.len() {
        let Some(&(name, val, omit)) = entries.get(i) else {
            break;
        };
        if omit {
            continue;
        }
        write!(out, "{sep}{name}=")?;
        *sep = ",";
        let neg = signed_negative(name, val);
        // Minima pair with minima and maxima with maxima: same parity.
        for other in entries.iter_mut().skip(i + 2).step_by(2) {
            let (oname, oval, oomit) = *other;
            if oomit || oval != val || signed_negative(oname, oval) != neg {
                continue;
            }
            other.2 = true;
            write!(out, "{oname}=")?;
        }
        if name.starts_with('s') {
            write!(out, "{}", Snum(val as i64))?;
        } else {
            write!(out, "{}", Unum(val))?;
        }
    }
    Ok(())
}

/// A scalar register's state in the kernel's log format, with the
/// per-register annotations the log prints along with it. Built by
/// [`ScalarValue::log`].
#[derive(Clone, Copy, Debug)]
pub struct ScalarLog<'a> {
    value: &'a ScalarValue,
    precise: bool,
    id: u32,
    delta: Option<i32>,
}

impl ScalarValue {
    /// The kernel's text for this value (`print_reg_state` of a scalar).
    pub fn log(&self) -> ScalarLog<'_> {
        ScalarLog {
            value: self,
            precise: false,
            id: 0,
            delta: None,
        }
    }
}

impl ScalarLog<'_> {
    /// Prefixes `P`, as for a register marked precise.
    pub fn precise(self, precise: bool) -> Self {
        ScalarLog { precise, ..self }
    }

    /// Prints `id=N` for a scalar linked with others (0: none).
    pub fn id(self, id: u32) -> Self {
        ScalarLog { id, ..self }
    }

    /// Prints the constant delta of a linked scalar after its id
    /// (`id=1+4`, `id=1-5`: the kernel's `BPF_ADD_CONST` links).
    pub fn delta(self, delta: Option<i32>) -> Self {
        ScalarLog { delta, ..self }
    }
}

impl fmt::Display for ScalarLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        if self.precise {
            f.write_str("P")?;
        }
        // Constants print as the bare number, without id.
        if v.var_off.is_const() {
            return write!(f, "{}", Snum(v.var_off.value() as i64));
        }
        f.write_str("scalar(")?;
        let mut sep = "";
        if self.id != 0 {
            write!(f, "id={}", self.id)?;
            sep = ",";
            if let Some(d) = self.delta {
                write!(f, "{d:+}")?;
            }
        }
        write_scalar_ranges(f, v, &mut sep)?;
        if !v.var_off.is_unknown() {
            write!(f, "{sep}var_off={}", v.var_off)?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tnum::Tnum;

    #[test]
    fn numbers() {
        assert_eq!(Unum(65535).to_string(), "65535");
        assert_eq!(Unum(65536).to_string(), "0x10000");
        assert_eq!(Snum(-32768).to_string(), "-32768");
        assert_eq!(Snum(-32769).to_string(), "0xffffffffffff7fff");
        assert_eq!(Snum(0x7fff_ffff).to_string(), "0x7fffffff");
    }

    #[test]
    fn kernel_examples() {
        // Lines taken from a Linux 6.18 verifier log.
        assert_eq!(ScalarValue::unknown().log().to_string(), "scalar()");
        assert_eq!(ScalarValue::constant(0).log().to_string(), "0");
        assert_eq!(ScalarValue::constant(u64::MAX).log().to_string(), "-1");
        let byte = ScalarValue::from_tnum(Tnum::new(0, 0xff));
        assert_eq!(
            byte.log().to_string(),
            "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
        );
        assert_eq!(
            byte.log().id(2).to_string(),
            "scalar(id=2,smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
        );
        assert_eq!(
            ScalarValue::unknown()
                .log()
                .id(1)
                .delta(Some(-5))
                .to_string(),
            "scalar(id=1-5)"
        );
        let mut v = ScalarValue::unknown();
        v.umin = 50;
        v.sync();
        assert_eq!(v.log().to_string(), "scalar(umin=50)");
        let shifted = ScalarValue::from_tnum(Tnum::new(0, 0xffff_ffff_0000_0000));
        assert_eq!(
            shifted.log().to_string(),
            "scalar(smax=0x7fffffff00000000,umax=0xffffffff00000000,smin32=0,smax32=umax32=0,var_off=(0x0; 0xffffffff00000000))"
        );
        let mut s = ScalarValue::unknown();
        s.smin = -2_147_483_648;
        s.smax = 0x7fff_ffff;
        s.sync();
        assert_eq!(
            s.log().to_string(),
            "scalar(smin=0xffffffff80000000,smax=0x7fffffff)"
        );
        assert_eq!(
            ScalarValue::constant(7).log().precise(true).to_string(),
            "P7"
        );
    }
}
