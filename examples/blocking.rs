//! A blocking sender and receiver on one bus: send a few frames, read them back.
//!
//! Runs on loopback only (IPv4 group 239.74.163.2 on `lo`, TTL 0):
//!
//! ```sh
//! cargo run --example blocking
//! ```

use std::time::Duration;

use canmc::bus::{Bus, BusConfig};
use canmc::socket::McastConfig;
use canmc::CanFrame;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = BusConfig::new(McastConfig::loopback_v4(43120));
    // Our own frames come back through multicast loopback; keep them for this demo.
    cfg.recv_own = true;
    let mut bus = Bus::open(&cfg)?;
    println!(
        "receiving via {:?}, sending from {}",
        bus.io_mode(),
        bus.local_addr()
    );

    for text in [
        "123#DEADBEEF",
        "12345678#R",
        "123##1000102030405060708090A0B",
    ] {
        let frame: CanFrame = text.parse()?;
        bus.send(&frame)?;
    }
    // An invalid frame is refused before it reaches the wire.
    let mut bad: CanFrame = "123#00".parse()?;
    bad.len = 9;
    if let Err(e) = bus.send(&bad) {
        println!("refused: {e}");
    }

    let mut received = 0;
    while let Some(frame) = bus.recv(Duration::from_millis(500))? {
        println!("{frame}  t={} from {:?}", frame.timestamp_ns, frame.sender);
        received += 1;
    }
    println!("{received} frames received; counters: {:?}", bus.counters());
    Ok(())
}
