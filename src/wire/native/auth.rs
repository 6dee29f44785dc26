//! Authentication of native datagrams: the shared [`AuthKey`], the BLAKE3 keyed tag that
//! [`seal`] appends and [`verify`] checks (`docs/wire-native.md` §3a), and reading a key
//! from its file.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{COMMON_HEADER_LEN, FLAG_AUTH, KEY_LEN, MAX_DATAGRAM_LIMIT, TAG_LEN};
use crate::wire::{DecodeError, NATIVE_MAGIC0};

/// A shared key for authenticated native datagrams (see [`seal`], [`verify`]).
///
/// Its `Debug` output never shows the key, so a configuration holding one can be logged
/// or printed by a panic (`AuthKey(<hidden>)`); equality is checked in constant time.
#[derive(Clone, Copy, Eq)]
pub struct AuthKey([u8; KEY_LEN]);

impl AuthKey {
    /// A key from its 32 bytes (any value; [`parse_key`] refuses the all-zero key of a
    /// placeholder file, this does not).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> AuthKey {
        AuthKey(bytes)
    }

    /// The key's bytes, for the keyed hash.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl From<[u8; KEY_LEN]> for AuthKey {
    fn from(bytes: [u8; KEY_LEN]) -> AuthKey {
        AuthKey(bytes)
    }
}

impl PartialEq for AuthKey {
    fn eq(&self, other: &AuthKey) -> bool {
        // Every byte compared whatever the first difference.
        let diff = self
            .0
            .iter()
            .zip(&other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<hidden>)")
    }
}

/// The tag of `data`: BLAKE3 keyed hash, cut to [`TAG_LEN`] bytes (128 bits is ample
/// against forgery: an attacker gets one guess per datagram and no oracle).
#[inline]
fn mac(key: &AuthKey, data: &[u8]) -> [u8; TAG_LEN] {
    let hash = blake3::keyed_hash(key.bytes(), data);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&hash.as_bytes()[..TAG_LEN]);
    tag
}

/// Authenticates the native datagram in `buf[..len]`: sets [`FLAG_AUTH`], makes
/// `datagram_len` count the tag, and appends the tag over every byte before it (header
/// included). Returns the new length, or 0 (nothing changed) when `buf` has no room for
/// the tag or `buf[..len]` is shorter than a common header.
pub fn seal(buf: &mut [u8], len: usize, key: &AuthKey) -> usize {
    let total = len + TAG_LEN;
    if len < COMMON_HEADER_LEN || total > buf.len() || total > MAX_DATAGRAM_LIMIT {
        return 0;
    }
    let flags = u16::from_le_bytes([buf[10], buf[11]]) | FLAG_AUTH;
    buf[10..12].copy_from_slice(&flags.to_le_bytes());
    buf[6..8].copy_from_slice(&(total as u16).to_le_bytes());
    let tag = mac(key, &buf[..len]);
    buf[len..total].copy_from_slice(&tag);
    total
}

/// Checks that `datagram` is a native datagram authenticated with `key`: long enough
/// for a header and a tag, [`FLAG_AUTH`] set, and its last [`TAG_LEN`] bytes the tag of
/// everything before them. Anything else is `BadAuth`. Checks nothing else: the caller
/// decodes it afterwards as usual. Never allocates.
pub fn verify(datagram: &[u8], key: &AuthKey) -> Result<(), DecodeError> {
    if datagram.len() < COMMON_HEADER_LEN + TAG_LEN || datagram[0] != NATIVE_MAGIC0 {
        return Err(DecodeError::BadAuth);
    }
    if u16::from_le_bytes([datagram[10], datagram[11]]) & FLAG_AUTH == 0 {
        return Err(DecodeError::BadAuth);
    }
    let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
    let expect = mac(key, body);
    // Every byte compared whatever the first difference, so timing tells an attacker
    // nothing about how much of a guessed tag was right.
    let diff = expect
        .iter()
        .zip(tag)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if std::hint::black_box(diff) == 0 {
        Ok(())
    } else {
        Err(DecodeError::BadAuth)
    }
}

/// A key from the contents of a key file: exactly 32 bytes (raw), or 64 hex digits
/// with surrounding whitespace trimmed. An all-zero key is refused (a placeholder file,
/// not a secret).
/// Why the contents of a key file are not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Neither 32 bytes nor 64 hex digits (after trimming whitespace).
    BadLength,
    /// 64 characters, not all of them hex digits.
    NotHex,
    /// The key is all zeros: a placeholder, not a secret.
    AllZero,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::BadLength => "a key file holds 32 raw bytes or 64 hex digits",
            KeyError::NotHex => "key file: not a hex digit",
            KeyError::AllZero => "key file: the key is all zeros",
        })
    }
}

impl std::error::Error for KeyError {}

/// Why [`read_key_file`] gave no key; both variants name the file.
#[derive(Debug)]
pub enum KeyFileError {
    /// The file could not be read.
    Read {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file was read but holds no key.
    Invalid {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        found: usize,
        /// What is wrong with its contents.
        source: KeyError,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            KeyFileError::Invalid {
                path,
                found,
                source,
            } => write!(f, "{}: {source} (found {found} bytes)", path.display()),
        }
    }
}

impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyFileError::Read { source, .. } => Some(source),
            KeyFileError::Invalid { source, .. } => Some(source),
        }
    }
}

/// A key from the contents of a key file: exactly 32 bytes (raw), or 64 hex digits
/// with surrounding whitespace trimmed. An all-zero key is refused (a placeholder file,
/// not a secret).
pub fn parse_key(bytes: &[u8]) -> Result<AuthKey, KeyError> {
    let mut key = [0u8; KEY_LEN];
    if bytes.len() == KEY_LEN {
        key.copy_from_slice(bytes);
    } else {
        let text = bytes.trim_ascii();
        if text.len() != 2 * KEY_LEN {
            return Err(KeyError::BadLength);
        }
        for (out, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
            let hi = hex_digit(pair[0]).ok_or(KeyError::NotHex)?;
            let lo = hex_digit(pair[1]).ok_or(KeyError::NotHex)?;
            *out = hi << 4 | lo;
        }
    }
    if key == [0u8; KEY_LEN] {
        return Err(KeyError::AllZero);
    }
    Ok(AuthKey(key))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Reads a key file (see [`parse_key`]); errors name the file and say what is wrong.
pub fn read_key_file(path: &Path) -> Result<AuthKey, KeyFileError> {
    let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_key(&bytes).map_err(|source| KeyFileError::Invalid {
        path: path.to_path_buf(),
        found: bytes.len(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use crate::frame::Channel;

    const KEY: AuthKey = AuthKey::from_bytes([7u8; KEY_LEN]);

    #[test]
    fn sealed_datagram_layout_and_verify() {
        let f = frame("123#DEADBEEF", 5, Channel::NONE);
        let mut buf = vec![0u8; DEFAULT_MAX_DATAGRAM];
        let mut enc = Encoder::with_key(3, DEFAULT_MAX_DATAGRAM, Some(KEY));
        enc.begin(&mut buf, 9, f.channel, 5);
        assert!(enc.push(&mut buf, &f));
        let n = enc.finish(&mut buf);
        let d = &buf[..n];
        assert_eq!(n, FRAMES_HEADER_LEN + 16 + TAG_LEN);
        assert_eq!(
            &d[6..8],
            &(n as u16).to_le_bytes(),
            "datagram_len counts the tag"
        );
        assert_eq!(&d[10..12], &[1, 0], "flags: authenticated");
        let h = blake3::keyed_hash(KEY.bytes(), &d[..n - TAG_LEN]);
        assert_eq!(&d[n - TAG_LEN..], &h.as_bytes()[..TAG_LEN]);
        assert_eq!(verify(d, &KEY), Ok(()));
        assert_eq!(
            verify(d, &AuthKey::from_bytes([8u8; KEY_LEN])),
            Err(DecodeError::BadAuth)
        );
        // Decoded without a key: the tag is not taken for records.
        let (r, out) = decode_all(d);
        assert_eq!((r.unwrap().error, out), (None, vec![f]));
        for i in 0..n {
            let mut bad = d.to_vec();
            bad[i] ^= 0x01;
            assert_eq!(
                verify(&bad, &KEY),
                Err(DecodeError::BadAuth),
                "bit flip at {i}"
            );
        }
        assert_eq!(verify(&d[..n - 1], &KEY), Err(DecodeError::BadAuth));
        assert_eq!(verify(&d[..39], &KEY), Err(DecodeError::BadAuth));
    }

    #[test]
    fn sealed_probe_and_answer_decode() {
        let probe = PingProbe {
            probe_id: 1,
            sent_ns: 2,
        };
        let mut buf = [0u8; ANSWER_LEN + TAG_LEN];
        let n = encode_probe(&mut buf, 1, 1, &probe);
        let n = seal(&mut buf, n, &KEY);
        assert_eq!(n, PROBE_LEN + TAG_LEN);
        assert_eq!(verify(&buf[..n], &KEY), Ok(()));
        assert_eq!(decode_probe(&buf[..n]).unwrap().1, probe);
        let a = PingAnswer::new(&probe, Role::Dump, 1, "h");
        let n = encode_answer(&mut buf, 1, 1, &a);
        let n = seal(&mut buf, n, &KEY);
        assert_eq!(n, ANSWER_LEN + TAG_LEN);
        assert_eq!(decode_answer(&buf[..n]).unwrap().1, a);
        assert_eq!(
            seal(&mut buf[..ANSWER_LEN + 8], ANSWER_LEN, &KEY),
            0,
            "no room"
        );
        // A flagged datagram too short to hold its header and a tag.
        let n = encode_probe(&mut buf, 1, 1, &probe);
        buf[10] = 1;
        assert_eq!(decode_probe(&buf[..n]).unwrap_err(), DecodeError::BadLength);
    }

    #[test]
    fn key_file_contents() {
        let raw = [0x5Au8; 32];
        let key = AuthKey::from_bytes(raw);
        assert_eq!(parse_key(&raw), Ok(key));
        let hex = "5a".repeat(32);
        assert_eq!(parse_key(hex.as_bytes()), Ok(key));
        assert_eq!(
            parse_key(format!("  {}\n", hex.to_uppercase()).as_bytes()),
            Ok(key)
        );
        assert_eq!(parse_key(&raw[..31]), Err(KeyError::BadLength));
        assert_eq!(parse_key(&[0x5A; 33]), Err(KeyError::BadLength));
        assert_eq!(
            parse_key(("5a".repeat(31) + "zz").as_bytes()),
            Err(KeyError::NotHex)
        );
        assert_eq!(parse_key(&[0u8; 32]), Err(KeyError::AllZero));
        assert_eq!(parse_key(b""), Err(KeyError::BadLength));
        assert_ne!(key, AuthKey::from_bytes([0x5B; 32]));
    }

    #[test]
    fn key_file_errors_name_the_file_and_the_problem() {
        use std::error::Error;
        let dir = std::env::temp_dir().join(format!("canmc-keytest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, b"abc").unwrap();
        let e = read_key_file(&short).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: a key file holds 32 raw bytes or 64 hex digits (found 3 bytes)",
                short.display()
            )
        );
        assert_eq!(
            e.source().unwrap().to_string(),
            KeyError::BadLength.to_string()
        );
        let missing = dir.join("missing");
        let e = read_key_file(&missing).unwrap_err();
        assert!(
            matches!(&e, KeyFileError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{e}"
        );
        assert!(e.source().is_some());
        let good = dir.join("good");
        std::fs::write(&good, "5a".repeat(32)).unwrap();
        assert_eq!(
            read_key_file(&good).unwrap(),
            AuthKey::from_bytes([0x5A; 32])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Key bytes written as lower-case hex, the way a key file or a careless log shows them.
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn debug_never_shows_the_key() {
        let bytes: [u8; KEY_LEN] = std::array::from_fn(|i| 0xA0 ^ i as u8);
        let key = AuthKey::from_bytes(bytes);
        let texts = [
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{:?}", Some(key)),
            format!("{:?}", Encoder::with_key(1, 200, Some(key))),
            format!("{:?}", NativeBatcher::with_key(1, 200, 1000, Some(key))),
        ];
        for text in &texts {
            assert!(!text.contains(&hex(&bytes)), "{text}");
            assert!(!text.contains(&hex(&bytes[..8])), "{text}");
            assert!(
                !text.contains(format!("{:?}", &bytes[..4]).trim_end_matches(']')),
                "{text}"
            );
        }
        assert_eq!(texts[0], "AuthKey(<hidden>)");
    }
}
