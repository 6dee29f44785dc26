//! candump's ID filters: `id:mask` keeps frames whose ID matches under the mask,
//! `id~mask` keeps those that do not. Several filters are OR-ed, as candump does.

use std::fmt;
use std::str::FromStr;

use crate::frame::CanFrame;

/// SocketCAN's flag bits inside a `can_id`, which candump's filters match on.
const CAN_EFF_FLAG: u32 = 0x8000_0000;
const CAN_RTR_FLAG: u32 = 0x4000_0000;
const CAN_ERR_FLAG: u32 = 0x2000_0000;

/// One candump filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdFilter {
    id: u32,
    mask: u32,
    invert: bool,
}

/// A filter that is not `id:mask` or `id~mask`; each variant holds the filter as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// Neither a `:` nor a `~` between ID and mask, or both.
    Separator(String),
    /// The ID is not 1 to 8 hex digits.
    Id(String),
    /// The mask is not 1 to 8 hex digits.
    Mask(String),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (filter, problem) = match self {
            FilterError::Separator(s) => (s, "no single ':' or '~'"),
            FilterError::Id(s) => (s, "the ID is not 1 to 8 hex digits"),
            FilterError::Mask(s) => (s, "the mask is not 1 to 8 hex digits"),
        };
        write!(
            f,
            "filter '{filter}' is not <id>:<mask> or <id>~<mask> (hex, e.g. 123:7FF): {problem}"
        )
    }
}

impl std::error::Error for FilterError {}

/// The `can_id` SocketCAN would report for this frame, flags included.
fn socketcan_id(frame: &CanFrame) -> u32 {
    let mut id = frame.id;
    if frame.is_extended() {
        id |= CAN_EFF_FLAG;
    }
    if frame.is_remote() {
        id |= CAN_RTR_FLAG;
    }
    if frame.is_error() {
        id |= CAN_ERR_FLAG;
    }
    id
}

impl IdFilter {
    /// True when this filter alone lets the frame through.
    pub fn matches(&self, frame: &CanFrame) -> bool {
        let hit = (socketcan_id(frame) & self.mask) == (self.id & self.mask);
        hit != self.invert
    }
}

impl FromStr for IdFilter {
    type Err = FilterError;

    /// Parses `123:7FF`, `12345678:1FFFFFFF` (8 ID digits set the extended flag, as in
    /// candump), or `123~7FF`.
    fn from_str(s: &str) -> Result<IdFilter, FilterError> {
        let (sep, invert) = match (s.find(':'), s.find('~')) {
            (Some(i), None) => (i, false),
            (None, Some(i)) => (i, true),
            _ => return Err(FilterError::Separator(s.to_owned())),
        };
        let (id_text, mask_text) = (&s[..sep], &s[sep + 1..]);
        let hex = |t: &str, bad: fn(String) -> FilterError| {
            if t.is_empty() || t.len() > 8 {
                return Err(bad(s.to_owned()));
            }
            u32::from_str_radix(t, 16).map_err(|_| bad(s.to_owned()))
        };
        let mut id = hex(id_text, FilterError::Id)?;
        // candump clears the error flag from masks: error frames are not filtered by ID.
        let mask = hex(mask_text, FilterError::Mask)? & !CAN_ERR_FLAG;
        if id_text.len() == 8 {
            id |= CAN_EFF_FLAG;
        }
        Ok(IdFilter { id, mask, invert })
    }
}

/// A set of filters: empty lets everything through, otherwise any match does.
#[derive(Debug, Clone, Default)]
pub struct FilterSet {
    filters: Vec<IdFilter>,
}

impl FilterSet {
    /// A set of these filters (empty: everything passes).
    pub fn new(filters: Vec<IdFilter>) -> Self {
        FilterSet { filters }
    }

    /// Parses each argument as an [`IdFilter`].
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, FilterError> {
        let filters = args
            .iter()
            .map(|a| a.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FilterSet { filters })
    }

    /// True when there are no filters (everything passes).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// True when the frame passes. Error frames always pass: like candump, ID filters
    /// do not apply to them.
    pub fn matches(&self, frame: &CanFrame) -> bool {
        self.filters.is_empty() || frame.is_error() || self.filters.iter().any(|f| f.matches(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> CanFrame {
        s.parse().unwrap()
    }

    #[test]
    fn match_and_inverse() {
        let only_123: FilterSet = FilterSet::parse(&["123:7FF"]).unwrap();
        assert!(only_123.matches(&f("123#00")));
        assert!(!only_123.matches(&f("124#00")));
        // Without the EFF bit in the mask, an extended frame with the same low bits matches.
        assert!(only_123.matches(&f("00000123#00")));

        let strict = FilterSet::parse(&["123:C00007FF"]).unwrap();
        assert!(strict.matches(&f("123#00")));
        assert!(!strict.matches(&f("00000123#00")));
        assert!(!strict.matches(&f("123#R")));

        let not_123 = FilterSet::parse(&["123~7FF"]).unwrap();
        assert!(!not_123.matches(&f("123#00")));
        assert!(not_123.matches(&f("456#00")));

        let ext = FilterSet::parse(&["12345678:1FFFFF00"]).unwrap();
        assert!(ext.matches(&f("123456FF#00")));
        assert!(!ext.matches(&f("12345778#00")));

        let two = FilterSet::parse(&["100:7F0", "200:7FF"]).unwrap();
        assert!(two.matches(&f("10A#")) && two.matches(&f("200#")) && !two.matches(&f("201#")));

        assert!(FilterSet::default().matches(&f("7FF#")));
        assert!(only_123.matches(&f("20000004#0000000000000000")));
    }

    #[test]
    fn rejects_bad_filters() {
        use FilterError::*;
        for (bad, want) in [
            ("", Separator as fn(String) -> FilterError),
            ("123", Separator),
            ("123:", Mask),
            (":7FF", Id),
            ("12G:7FF", Id),
            ("123:7FF~1", Separator),
            ("123456789:1", Id),
            ("123:7FG", Mask),
        ] {
            assert_eq!(bad.parse::<IdFilter>(), Err(want(bad.to_owned())), "{bad}");
        }
        let msg = "12G:7FF".parse::<IdFilter>().unwrap_err().to_string();
        assert!(
            msg.contains("12G:7FF") && msg.contains("the ID is not"),
            "{msg}"
        );
        let msg = "xyz".parse::<IdFilter>().unwrap_err().to_string();
        assert!(msg.contains("xyz") && msg.contains("<id>:<mask>"), "{msg}");
    }
}
