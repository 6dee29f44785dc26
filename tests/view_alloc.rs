//! The views' per-frame work allocates nothing once an ID has been seen: `top`'s table
//! (count, period, changed bytes, rates, a copy for the screen once the copy has held as
//! many rows), `plot`'s series and histograms, and DBC decoding.

mod common;

use canmc::engine::Event;
use canmc::view::dbc::Dbc;
use canmc::view::plot::PlotData;
use canmc::view::table::IdTable;
use canmc::{CanFrame, Channel};
use common::alloc::{allocations, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn frames() -> Vec<CanFrame> {
    let channels = [Channel::NONE, Channel::str("can1").unwrap()];
    (0..1000u64)
        .map(|i| {
            let mut f = if i % 10 == 0 {
                CanFrame::new(0x18FE_F100, canmc::frame::flags::EXTENDED, &[i as u8; 8]).unwrap()
            } else {
                CanFrame::new((i % 200) as u32, 0, &i.to_le_bytes()).unwrap()
            };
            f.channel = channels[i as usize % 2];
            f
        })
        .collect()
}

#[test]
fn known_ids_do_not_allocate() {
    assert_counter_works();
    let frames = frames();
    let mut table = IdTable::new();
    let mut copy = IdTable::new();
    let mut plot = PlotData::new();
    // Warm-up: every ID appears once (allocation allowed), and the copy takes its size.
    for (i, f) in frames.iter().enumerate() {
        let mut f = *f;
        f.timestamp_ns = i as u64;
        table.on_event(&Event::Frame(f));
        plot.add(&Event::Frame(f));
    }
    table.copy_into(&mut copy);
    let dbc = Dbc::open(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/views.dbc"),
    )
    .unwrap();
    let engine = CanFrame::new(0x100, 0, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();

    let n = 200_000u64;
    let (allocs, decoded) = allocations(|| {
        let mut decoded = 0u64;
        for i in 0..n {
            let mut f = frames[(i % 1000) as usize];
            // Spread over 100 s so rate windows pass and plot buckets merge.
            f.timestamp_ns = 1_000 + i * 500_000;
            let e = Event::Frame(f);
            table.on_event(&e);
            plot.add(&e);
            if i % 1000 == 0 {
                table.tick(f.timestamp_ns);
                table.copy_into(&mut copy);
                table.on_event(&Event::Loss {
                    sender: Default::default(),
                    lost: 1,
                    timestamp_ns: f.timestamp_ns,
                });
                plot.add(&Event::KernelDrops {
                    count: 1,
                    timestamp_ns: f.timestamp_ns,
                });
            }
            dbc.decode(&engine, &mut |s| decoded += u64::from(s.value.is_finite()));
        }
        decoded
    });
    assert_eq!(
        allocs, 0,
        "{allocs} allocations for {n} frames of known IDs"
    );
    assert_eq!(decoded, n * 7);
    assert_eq!(table.totals().frames, 1000 + n);
    assert_eq!(copy.rows().len(), table.rows().len());
    assert_eq!(plot.frames, 1000 + n);
}
