//! Quantities on the `tcp simulate` command line: bandwidths (`100Mbit`), times (`20ms`),
//! buffer sizes (`1bdp`, `150000`, `64KiB`) and loss rates (`0.01`, `1%`). Each parser
//! returns a message clap shows as a usage error.

/// Splits `s` into its leading number (digits, `.`, an exponent) and the unit after it.
fn number_unit(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let b = s.as_bytes();
    let mut end = 0;
    while end < b.len() {
        let c = b[end];
        if c.is_ascii_digit() || c == b'.' {
            end += 1;
        } else if (c == b'e' || c == b'E') && end > 0 {
            // An exponent only when digits follow (`2e6`, `1e-3`); else the unit starts.
            let mut k = end + 1;
            if k < b.len() && (b[k] == b'-' || b[k] == b'+') {
                k += 1;
            }
            if k < b.len() && b[k].is_ascii_digit() {
                end = k;
            } else {
                break;
            }
        } else {
            break;
        }
    }
    let (num, unit) = s.split_at(end);
    if num.is_empty() {
        return Err(format!("'{s}' does not start with a number"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{num}' in '{s}' is not a number"))?;
    if !v.is_finite() {
        return Err(format!("'{s}' is not a finite number"));
    }
    Ok((v, unit.trim()))
}

/// A value scaled to an integer, refusing what does not fit.
fn scaled(v: f64, scale: f64, what: &str, s: &str) -> Result<u64, String> {
    let x = (v * scale).round();
    if x.is_nan() || x >= 9.0e18 {
        return Err(format!("{what} '{s}' is too large"));
    }
    Ok(x as u64)
}

/// A bandwidth in bit/s: `100Mbit`, `1Gbit`, `500kbit`, `1.5Gbit/s`, `64000bit`
/// (decimal prefixes, as tc's). Bytes per second units are refused: tc reads `mbps` as
/// megabytes per second, which is easy to get wrong.
pub fn bandwidth(s: &str) -> Result<u64, String> {
    let (v, unit) = number_unit(s)?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit.strip_suffix("/s").unwrap_or(&unit);
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "" => {
            return Err(format!(
                "'{s}' needs a unit: bit, kbit, Mbit or Gbit (e.g. 100Mbit)"
            ));
        }
        u if u.ends_with("bps") || u.ends_with('b') => {
            return Err(format!(
                "'{s}': write bandwidths in bits per second (kbit, Mbit, Gbit), e.g. 100Mbit"
            ));
        }
        u => {
            return Err(format!(
                "'{s}': unknown bandwidth unit '{u}' (bit, kbit, Mbit, Gbit)"
            ));
        }
    };
    let bps = scaled(v, scale, "bandwidth", s)?;
    if bps < 1000 {
        return Err(format!("bandwidth '{s}' is below 1kbit"));
    }
    if bps > 1_000_000_000_000 {
        return Err(format!("bandwidth '{s}' is above 1Tbit"));
    }
    Ok(bps)
}

/// A time in ns: `20ms`, `30s`, `500us`, `100ns`, `2min`. A unit is required.
pub fn time_ns(s: &str) -> Result<u64, String> {
    let (v, unit) = number_unit(s)?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "min" | "m" => 60e9,
        "" => {
            return Err(format!(
                "'{s}' needs a unit: ns, us, ms, s or min (e.g. 20ms)"
            ));
        }
        u => {
            return Err(format!(
                "'{s}': unknown time unit '{u}' (ns, us, ms, s, min)"
            ));
        }
    };
    scaled(v, scale, "time", s)
}

/// A positive time: [`time_ns`] above zero.
pub fn positive_time_ns(s: &str) -> Result<u64, String> {
    let t = time_ns(s)?;
    if t == 0 {
        return Err(format!("'{s}' must be greater than zero"));
    }
    Ok(t)
}

/// A simulated duration: positive and at most an hour (the simulator keeps per-flow
/// time series in memory).
pub fn duration_ns(s: &str) -> Result<u64, String> {
    let t = positive_time_ns(s)?;
    if t > 3600 * 1_000_000_000 {
        return Err(format!("duration '{s}' is longer than one hour"));
    }
    Ok(t)
}

/// Per-flow round-trip times: one time, or a comma-separated list (one per flow).
pub fn rtt_list(s: &str) -> Result<RttList, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let t = positive_time_ns(part)?;
        if t > 10 * 1_000_000_000 {
            return Err(format!("RTT '{}' is longer than 10s", part.trim()));
        }
        v.push(t);
    }
    Ok(RttList(v))
}

/// The `--rtt` list, in ns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttList(pub Vec<u64>);

/// The bottleneck buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Buffer {
    /// A multiple of the bandwidth-delay product.
    Bdp(f64),
    /// Bytes.
    Bytes(u64),
}

impl Buffer {
    /// The size in bytes for a bottleneck of `bw_bps` and a round trip of `rtt_ns`.
    pub fn bytes(self, bw_bps: u64, rtt_ns: u64) -> u64 {
        match self {
            Buffer::Bytes(b) => b,
            Buffer::Bdp(k) => {
                let bdp = bw_bps as f64 * rtt_ns as f64 / 8e9;
                (k * bdp).round() as u64
            }
        }
    }
}

/// A buffer size: `1bdp`, `0.5bdp`, `bdp`, or bytes (`150000`, `150KB`, `64KiB`, `1MB`).
pub fn buffer(s: &str) -> Result<Buffer, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("bdp") {
        return Ok(Buffer::Bdp(1.0));
    }
    let (v, unit) = number_unit(t)?;
    let unit = unit.to_ascii_lowercase();
    let scale = match unit.as_str() {
        "bdp" => {
            if v > 1000.0 {
                return Err(format!("buffer '{s}' is more than 1000 BDP"));
            }
            return Ok(Buffer::Bdp(v));
        }
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "'{s}': unknown buffer unit '{u}' (bdp, B, KB, KiB, MB, MiB)"
            ));
        }
    };
    let b = scaled(v, scale, "buffer", s)?;
    if b > 1 << 34 {
        return Err(format!("buffer '{s}' is larger than 16GiB"));
    }
    Ok(Buffer::Bytes(b))
}

/// A random loss probability per packet: `0.01` or `1%`, below 1.
pub fn loss(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (v, unit) = number_unit(t)?;
    let p = match unit {
        "" => v,
        "%" => v / 100.0,
        u => {
            return Err(format!(
                "'{s}': unknown loss unit '{u}' (a probability, or %)"
            ));
        }
    };
    if p.is_nan() || p >= 1.0 {
        return Err(format!("loss '{s}' must be below 1 (100%)"));
    }
    Ok(p)
}

/// Formats ns as a short time (`20ms`, `1.5s`, `250us`).
pub fn fmt_time(ns: u64) -> String {
    if ns >= 1_000_000_000 && ns.is_multiple_of(1_000_000) {
        trim(format!("{:.3}", ns as f64 / 1e9)) + "s"
    } else if ns >= 1_000_000 && ns.is_multiple_of(1000) {
        trim(format!("{:.3}", ns as f64 / 1e6)) + "ms"
    } else if ns >= 1000 {
        trim(format!("{:.3}", ns as f64 / 1e3)) + "us"
    } else {
        format!("{ns}ns")
    }
}

/// Formats bit/s (`100Mbit`, `1.5Gbit`).
pub fn fmt_bw(bps: u64) -> String {
    let (v, u) = if bps >= 1_000_000_000 {
        (bps as f64 / 1e9, "Gbit")
    } else if bps >= 1_000_000 {
        (bps as f64 / 1e6, "Mbit")
    } else {
        (bps as f64 / 1e3, "kbit")
    };
    trim(format!("{v:.3}")) + u
}

/// `1.500` -> `1.5`, `2.000` -> `2`.
fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths() {
        assert_eq!(bandwidth("100Mbit"), Ok(100_000_000));
        assert_eq!(bandwidth("1Gbit"), Ok(1_000_000_000));
        assert_eq!(bandwidth("500kbit"), Ok(500_000));
        assert_eq!(bandwidth("1.5gbit/s"), Ok(1_500_000_000));
        assert_eq!(bandwidth("2e6bit"), Ok(2_000_000));
        assert!(bandwidth("100").unwrap_err().contains("needs a unit"));
        assert!(
            bandwidth("100mbps")
                .unwrap_err()
                .contains("bits per second")
        );
        assert!(bandwidth("100furlong").unwrap_err().contains("unknown"));
        assert!(bandwidth("Mbit").unwrap_err().contains("number"));
        assert!(bandwidth("-5Mbit").is_err());
        assert!(bandwidth("0Mbit").is_err());
        assert!(bandwidth("1e400Mbit").is_err());
        assert!(bandwidth("99999Tbit").is_err());
        assert!(bandwidth("1.2.3Mbit").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(time_ns("20ms"), Ok(20_000_000));
        assert_eq!(time_ns("30s"), Ok(30_000_000_000));
        assert_eq!(time_ns("500us"), Ok(500_000));
        assert_eq!(time_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(time_ns("2min"), Ok(120_000_000_000));
        assert!(time_ns("20").unwrap_err().contains("needs a unit"));
        assert!(time_ns("20 parsecs").is_err());
        assert!(positive_time_ns("0s").is_err());
        assert!(duration_ns("2h").is_err());
        assert!(duration_ns("61min").unwrap_err().contains("hour"));
        assert!(time_ns("").is_err());
    }

    #[test]
    fn rtts() {
        assert_eq!(rtt_list("20ms"), Ok(RttList(vec![20_000_000])));
        assert_eq!(
            rtt_list("10ms, 40ms"),
            Ok(RttList(vec![10_000_000, 40_000_000]))
        );
        assert!(rtt_list("10ms,").is_err());
        assert!(rtt_list("20s").is_err());
    }

    #[test]
    fn buffers() {
        assert_eq!(buffer("1bdp"), Ok(Buffer::Bdp(1.0)));
        assert_eq!(buffer("0.5BDP"), Ok(Buffer::Bdp(0.5)));
        assert_eq!(buffer("bdp"), Ok(Buffer::Bdp(1.0)));
        assert_eq!(buffer("150000"), Ok(Buffer::Bytes(150_000)));
        assert_eq!(buffer("64KiB"), Ok(Buffer::Bytes(65_536)));
        assert_eq!(buffer("1MB"), Ok(Buffer::Bytes(1_000_000)));
        assert!(buffer("1parsec").is_err());
        assert!(buffer("1e30").is_err());
        // 100 Mbit/s x 20 ms = 250 000 bytes.
        assert_eq!(Buffer::Bdp(1.0).bytes(100_000_000, 20_000_000), 250_000);
        assert_eq!(Buffer::Bdp(0.5).bytes(100_000_000, 20_000_000), 125_000);
    }

    #[test]
    fn losses() {
        assert_eq!(loss("0.01"), Ok(0.01));
        assert_eq!(loss("1%"), Ok(0.01));
        assert_eq!(loss("0"), Ok(0.0));
        assert_eq!(loss("1e-3"), Ok(0.001));
        assert!(loss("1").is_err());
        assert!(loss("150%").is_err());
        assert!(loss("-0.1").is_err());
        assert!(loss("NaN").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_time(20_000_000), "20ms");
        assert_eq!(fmt_time(1_500_000_000), "1.5s");
        assert_eq!(fmt_time(250_000), "250us");
        assert_eq!(fmt_bw(100_000_000), "100Mbit");
        assert_eq!(fmt_bw(1_500_000_000), "1.5Gbit");
    }
}
