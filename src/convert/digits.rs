//! Decimal and hex digits appended to a line buffer, for the text writers.
//!
//! Written by hand because `write!` with width and fill was the largest cost of the
//! `.log` and `.asc` writers (docs/perf.md, "Conversions"): these append the digits
//! with no formatter in between.

/// How many decimal digits `v` has (1 for 0).
pub(crate) fn decimal_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Appends `v` in decimal, zero-padded on the left to at least `min_width` digits.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut v: u64, min_width: usize) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[19 - n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
        if v == 0 {
            break;
        }
    }
    out.extend(std::iter::repeat_n(b'0', min_width.saturating_sub(n)));
    out.extend_from_slice(&digits[20 - n..]);
}

/// Appends `v` in decimal, right-aligned in `width` columns (space-padded), as `{v:>width$}`.
pub(crate) fn push_decimal_right(out: &mut Vec<u8>, v: u64, width: usize) {
    push_spaces(out, width.saturating_sub(decimal_len(v)));
    push_decimal(out, v, 0);
}

/// Appends a signed value as `{v:>width$}` would.
pub(crate) fn push_signed_right(out: &mut Vec<u8>, v: i64, width: usize) {
    let len = decimal_len(v.unsigned_abs()) + (v < 0) as usize;
    push_spaces(out, width.saturating_sub(len));
    if v < 0 {
        out.push(b'-');
    }
    push_decimal(out, v.unsigned_abs(), 0);
}

/// Appends `n` spaces.
pub(crate) fn push_spaces(out: &mut Vec<u8>, n: usize) {
    out.extend(std::iter::repeat_n(b' ', n));
}

/// Appends bytes as upper-case hex pairs separated by spaces (`DE AD BE EF`), the data
/// column of ASC and TRC.
pub(crate) fn push_hex_bytes(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xF) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_the_formatter() {
        for v in [0u64, 1, 9, 10, 99, 100, 123_456, u32::MAX as u64, u64::MAX] {
            assert_eq!(decimal_len(v), v.to_string().len());
            for w in [0, 1, 6, 10, 25] {
                let mut out = Vec::new();
                push_decimal(&mut out, v, w);
                assert_eq!(String::from_utf8(out).unwrap(), format!("{v:0w$}"));
                let mut out = Vec::new();
                push_decimal_right(&mut out, v, w);
                assert_eq!(String::from_utf8(out).unwrap(), format!("{v:>w$}"));
            }
        }
    }

    #[test]
    fn signed_and_hex_bytes_match_the_formatter() {
        for v in [0i64, 1, -1, 42, -42, i64::MIN, i64::MAX] {
            for w in [0, 2, 3, 25] {
                let mut out = Vec::new();
                push_signed_right(&mut out, v, w);
                assert_eq!(String::from_utf8(out).unwrap(), format!("{v:>w$}"));
            }
        }
        let mut out = Vec::new();
        push_hex_bytes(&mut out, &[0xDE, 0x0A, 0xF0]);
        assert_eq!(out, b"DE 0A F0");
        out.clear();
        push_hex_bytes(&mut out, &[]);
        assert!(out.is_empty());
    }
}
