//! One module per command; each `run` takes its parsed flags, calls the library and
//! prints. `receiver` is the setup the receiving commands share.

pub(crate) mod convert;
pub(crate) mod dump;
pub(crate) mod gen;
pub(crate) mod info;
pub(crate) mod ping;
pub(crate) mod plot;
pub(crate) mod receiver;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod send;
pub(crate) mod signals;
pub(crate) mod top;

use canmc::frame::Channel;
use canmc::send::FrameSender;
use canmc::socket::SendSocket;
use canmc::wire::native;
use canmc::wire::WireFormat;

use crate::cli::{SendOpts, WireArg};
use crate::Failure;

pub(crate) use canmc::now_ns;

impl SendOpts {
    pub(crate) fn channel(&self) -> Result<Channel, String> {
        match &self.channel {
            None => Ok(Channel::NONE),
            Some(s) => match s.parse::<i64>() {
                Ok(n) => Ok(Channel::int(n)),
                Err(_) => Channel::str(s).map_err(|e| format!("--channel '{s}': {e}")),
            },
        }
    }

    pub(crate) fn wire(&self) -> WireFormat {
        match self.wire {
            WireArg::Pycan => WireFormat::Pycan,
            WireArg::Native => WireFormat::Native,
        }
    }

    pub(crate) fn sender(
        &self,
        sock: SendSocket,
        key: Option<native::AuthKey>,
    ) -> Result<FrameSender, Failure> {
        if key.is_some() && matches!(self.wire, WireArg::Pycan) {
            return Err(Failure::usage(
                "--key-file needs --wire native: python-can datagrams cannot carry a tag",
            ));
        }
        let linger_ns = self.linger.as_nanos() as u64;
        Ok(
            FrameSender::new(sock, self.wire(), self.max_datagram as usize, linger_ns)
                .with_key(key),
        )
    }
}
