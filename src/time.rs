//! Timestamps in IST (UTC+05:30), RFC 3339 with milliseconds (SPEC §5).

use std::time::{SystemTime, UNIX_EPOCH};

const IST_OFFSET_MS: i64 = (5 * 60 + 30) * 60 * 1000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats `ms` since the Unix epoch as IST, e.g. `2026-11-25T21:10:03.123+05:30`.
pub fn format_ist(ms: i64) -> String {
    let local = ms + IST_OFFSET_MS;
    let days = local.div_euclid(86_400_000);
    let in_day = local.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}+05:30")
}

/// Proleptic Gregorian date of a day number (days since 1970-01-01); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ist(0), "1970-01-01T05:30:00.000+05:30");
        // 2026-11-25T15:40:03.123Z
        assert_eq!(
            format_ist(1_764_085_203_123),
            "2025-11-25T21:10:03.123+05:30"
        );
        // Crossing midnight in IST: 2024-02-28T20:00:00Z is 2024-02-29T01:30 IST (leap day).
        assert_eq!(
            format_ist(1_709_150_400_000),
            "2024-02-29T01:30:00.000+05:30"
        );
        assert_eq!(format_ist(-1), "1970-01-01T05:29:59.999+05:30");
    }
}
