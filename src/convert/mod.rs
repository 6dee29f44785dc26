//! Conversions between frames and file/text formats: candump logs and candump's screen
//! output ([`candump`]).

pub mod candump;
