//! Views of traffic for people: the per-ID table `canmc top` draws ([`table`]), the
//! series and histograms `canmc plot` draws ([`plot`], rendered by [`render`]), and DBC
//! signal decoding ([`dbc`]). Nothing here depends on a terminal: the CLI draws.

pub mod dbc;
pub mod plot;
pub mod render;
pub mod table;

/// Bits a frame occupies on a CAN bus, without stuff bits: the lower bound
/// `canbusload` (can-utils) also uses by default.
///
/// Classic: SOF, arbitration (11-bit ID + RTR, or 29-bit ID + SRR + IDE + RTR), control
/// (IDE/r0 + 4 DLC bits), the data, CRC 15 + delimiter, ACK slot + delimiter, EOF 7 and
/// the 3-bit interframe space: 47 + 8n (standard) or 67 + 8n (extended).
///
/// CAN FD counts every bit at the nominal rate (a bit-rate-switched data phase is
/// faster, so this overstates its load): 17- or 21-bit CRC by length, a 4-bit stuff
/// count, and FDF, res, BRS, ESI in the control field.
pub fn frame_bits(extended: bool, fd: bool, len: u8) -> u32 {
    let data = 8 * u32::from(len);
    if fd {
        let crc = if len <= 16 { 17 } else { 21 };
        // SOF + ID + RRS(+SRR/IDE) + IDE/FDF/res/BRS/ESI + DLC + data + stuff count
        // + CRC + delimiters/ACK + EOF + IFS.
        let arb = if extended { 1 + 29 + 2 + 1 } else { 1 + 11 + 1 };
        arb + 5 + 4 + data + 4 + crc + 4 + 7 + 3
    } else if extended {
        67 + data
    } else {
        47 + data
    }
}

#[cfg(test)]
mod tests {
    use super::frame_bits;

    #[test]
    fn classic_frame_bits_match_the_textbook() {
        // 8-byte standard frame: 111 bits without stuffing (Bosch CAN 2.0 frame
        // layout: 44 + 64 + 3 IFS).
        assert_eq!(frame_bits(false, false, 8), 111);
        assert_eq!(frame_bits(false, false, 0), 47);
        assert_eq!(frame_bits(true, false, 8), 131);
        assert!(frame_bits(false, true, 64) > frame_bits(false, true, 8));
    }
}
