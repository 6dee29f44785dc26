//! Apache Parquet captures through the official Arrow crates (`arrow-array`,
//! `parquet`): one row per event, for DuckDB, Spark, Trino and pandas. Built with the
//! `parquet` cargo feature (on by default; docs/data-lake.md).
//!
//! Columns (every row has `timestamp` and `event`; the frame columns are null on loss
//! rows, `lost` is null on frame rows):
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `timestamp` | Timestamp(ns, "UTC") | receive time |
//! | `event` | Utf8 | `frame`, `loss` (a native sender's sequence gap), `kernel_drops` |
//! | `channel` | Utf8, null = none | python-can channel; an integer channel as its digits |
//! | `id` | UInt32 | identifier (error class bits for error frames) |
//! | `extended`, `remote`, `error`, `fd`, `brs`, `esi` | Boolean | flags |
//! | `direction` | Utf8 | `rx` or `tx` |
//! | `dlc` | UInt8 | the DLC code (raw 9–15 of classic frames kept) |
//! | `data` | Binary | payload (empty for remote frames) |
//! | `sender` | Utf8, null = unknown | `ip:port` the datagram came from (also on `loss` rows) |
//! | `lost` | UInt64 | datagrams lost (`loss`) or dropped by the kernel (`kernel_drops`) |
//!
//! Writing: [`ParquetWriter::write_event`] copies the event into a preallocated batch
//! and nothing else; a full batch goes to a writer thread that builds the columns,
//! compresses and writes them, and sends the emptied batch back. So `record -o
//! x.parquet` does no encoding on the receive thread and allocates nothing per frame.
//! [`Partition::Hour`] writes a Hive-style tree (`date=YYYY-MM-DD/hour=HH/part-….parquet`).
//!
//! Reading goes one record batch at a time (bounded by the row-group size).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, StringBuilder, UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt32Array, UInt64Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn,
    ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::Encoding;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::pipeline::{BatchSink, Pipelined};
use super::{io_err, ConvertError, FrameWriter, ReadOptions, ReadStats};
use crate::event::Event;
use crate::frame::{flags, CanFrame, Channel, ChannelRef, Direction, SenderAddr};

/// Rows per batch handed to the writer thread, and per row group (docs/data-lake.md:
/// 1 Mi rows measured best for size and DuckDB scans at an encoder cost equal to
/// 128 Ki; memory stays bounded by one row group, ~30 MB).
pub const DEFAULT_ROW_GROUP: usize = 1 << 20;
/// Rows per batch copied on the caller's thread before the writer thread takes them.
const BATCH_ROWS: usize = 1 << 16;
/// Leaves in flight to the second encoder thread.
const BATCHES: usize = 4;
/// Columns written without a dictionary (see [`Sink::new`]).
const NO_DICTIONARY: [&str; 8] = [
    "timestamp",
    "event",
    "channel",
    "direction",
    "dlc",
    "data",
    "sender",
    "lost",
];
/// Columns the second encoder thread encodes (see [`ColumnEncoders`]): about half of
/// the encoding work, measured with callgrind on classic 8-byte frames.
const SECOND_THREAD_COLUMNS: [&str; 6] = [
    "timestamp",
    "data",
    "sender",
    "channel",
    "event",
    "direction",
];

/// Column compression of a Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// zstd level 1: the default (docs/data-lake.md has the measurement).
    #[default]
    Zstd,
    /// Snappy, Spark's default.
    Snappy,
    /// No compression.
    None,
}

/// How the output is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partition {
    /// One file at the given path.
    #[default]
    None,
    /// The path is a folder; each event goes to
    /// `date=YYYY-MM-DD/hour=HH/part-<first ns>-<pid>-<n>.parquet` by its UTC time.
    Hour,
}

/// Options of a [`ParquetWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetOptions {
    /// Column compression.
    pub compression: Compression,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Single file or Hive-style partitions.
    pub partition: Partition,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: Compression::default(),
            row_group_rows: DEFAULT_ROW_GROUP,
            partition: Partition::None,
        }
    }
}

/// The Arrow schema canmc writes and reads (see the module docs).
pub fn schema() -> SchemaRef {
    let b = |name: &str| Field::new(name, DataType::Boolean, true);
    Arc::new(Schema::new(vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("event", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, true),
        Field::new("id", DataType::UInt32, true),
        b("extended"),
        b("remote"),
        b("error"),
        b("fd"),
        b("brs"),
        b("esi"),
        Field::new("direction", DataType::Utf8, true),
        Field::new("dlc", DataType::UInt8, true),
        Field::new("data", DataType::Binary, true),
        Field::new("sender", DataType::Utf8, true),
        Field::new("lost", DataType::UInt64, true),
    ]))
}

/// Writes events to Parquet. Created by [`super::create_writer`] for `.parquet`, or
/// directly with options. The caller's thread copies events into batches; a writer
/// thread ([`super::pipeline`]) builds the columns, encodes them (with a second
/// encoder thread) and writes them.
#[derive(Debug)]
pub struct ParquetWriter(Pipelined);

impl ParquetWriter {
    /// Creates the file (or, with [`Partition::Hour`], the folder) and starts the
    /// writer thread. The first file is created here so a bad path fails now.
    pub fn create(path: &Path, opts: ParquetOptions) -> Result<ParquetWriter, ConvertError> {
        let mut sink = Sink::new(path, opts)?;
        if opts.partition == Partition::None {
            sink.open(path.to_path_buf())?;
        } else {
            std::fs::create_dir_all(path).map_err(io_err(path))?;
        }
        Ok(ParquetWriter(Pipelined::spawn(
            "canmc-parquet",
            path,
            BATCH_ROWS,
            Box::new(sink),
        )?))
    }
}

impl FrameWriter for ParquetWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        self.0.write_frame(frame)
    }
    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        self.0.write_loss(sender, lost, ts)
    }
    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        self.0.write_kernel_drops(count, ts)
    }
    fn write_event(&mut self, event: &Event) -> Result<(), ConvertError> {
        self.0.write_event(event)
    }
    /// Parquet files are readable only once closed (the footer holds the index), so a
    /// flush only hands the rows buffered so far to the writer thread.
    fn flush(&mut self) -> Result<(), ConvertError> {
        self.0.flush()
    }
    fn finish(self: Box<Self>) -> Result<(), ConvertError> {
        Box::new(self.0).finish()
    }
}

impl BatchSink for Sink {
    fn write(&mut self, events: &[Event]) -> Result<(), ConvertError> {
        Sink::write(self, events)
    }
    fn flush(&mut self) -> Result<(), ConvertError> {
        Ok(())
    }
    fn close(mut self: Box<Self>) -> Result<(), ConvertError> {
        Sink::close(&mut self)
    }
}

/// The writer thread's side: column building, the open file(s).
struct Sink {
    root: PathBuf,
    opts: ParquetOptions,
    props: WriterProperties,
    schema: SchemaRef,
    current: Option<OpenFile>,
    encoders: ColumnEncoders,
    parts: u64,
    cache: StrCache,
}

impl Sink {
    fn new(root: &Path, opts: ParquetOptions) -> Result<Sink, ConvertError> {
        let compression = match opts.compression {
            Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(1).expect("level 1")),
            Compression::Snappy => PqCompression::SNAPPY,
            Compression::None => PqCompression::UNCOMPRESSED,
        };
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
            .set_created_by(format!("canmc {}", env!("CARGO_PKG_VERSION")))
            // Receive times grow by small steps: delta encoding stores them in a
            // fraction of 8 bytes each (docs/data-lake.md has the measurement).
            .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
            // The payload's min/max say nothing a query can use.
            .set_column_statistics_enabled(ColumnPath::from("data"), EnabledStatistics::None);
        // Only `id` gains from a dictionary. The others are distinct from row to row
        // (times, payloads), where a dictionary is hashing thrown away when it outgrows
        // its page, or a handful of values in long runs (event, direction, channel,
        // sender, dlc), which zstd packs as small as a dictionary does, for less work.
        for column in NO_DICTIONARY {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        Ok(Sink {
            root: root.to_path_buf(),
            opts,
            props: props.build(),
            schema: schema(),
            current: None,
            encoders: ColumnEncoders::start(&schema())?,
            parts: 0,
            cache: StrCache::default(),
        })
    }

    fn open(&mut self, path: PathBuf) -> Result<(), ConvertError> {
        let file = File::create(&path).map_err(io_err(&path))?;
        // ArrowWriter sets up the file (Parquet schema, the Arrow schema in the footer's
        // metadata); its lower-level parts then let two threads encode the columns.
        let (writer, factory) =
            ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(pq_err(&path))?;
        self.current = Some(OpenFile {
            writer,
            factory,
            path,
            hour: u64::MAX,
            group_rows: 0,
            groups: 0,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), ConvertError> {
        if let Some(mut open) = self.current.take() {
            if open.group_rows > 0 {
                self.encoders
                    .finish_group(&mut open)
                    .map_err(pq_err(&open.path))?;
            }
            let file = open.writer.into_inner().map_err(pq_err(&open.path))?;
            file.sync_all().map_err(io_err(&open.path))?;
        }
        Ok(())
    }

    fn write(&mut self, events: &[Event]) -> Result<(), ConvertError> {
        if self.opts.partition == Partition::None {
            return self.write_rows(events);
        }
        // Runs of events in one hour go to that hour's file.
        let mut start = 0;
        while start < events.len() {
            let hour = event_ns(&events[start]) / HOUR_NS;
            let end = events[start..]
                .iter()
                .position(|e| event_ns(e) / HOUR_NS != hour)
                .map_or(events.len(), |n| start + n);
            if self.current.as_ref().map(|c| c.hour) != Some(hour) {
                self.close()?;
                let (dir, name) =
                    partition_path(event_ns(&events[start]), std::process::id(), self.parts);
                let dir = self.root.join(dir);
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                self.parts += 1;
                self.open(dir.join(name))?;
                if let Some(c) = &mut self.current {
                    c.hour = hour;
                }
            }
            self.write_rows(&events[start..end])?;
            start = end;
        }
        Ok(())
    }

    fn write_rows(&mut self, events: &[Event]) -> Result<(), ConvertError> {
        let batch = build_batch(&self.schema, events, &mut self.cache);
        let open = self.current.as_mut().expect("a file is open");
        let group_rows = self.opts.row_group_rows.max(1);
        let mut done = 0;
        while done < batch.num_rows() {
            let n = (group_rows - open.group_rows).min(batch.num_rows() - done);
            self.encoders
                .write(open, &batch.slice(done, n))
                .map_err(pq_err(&open.path))?;
            done += n;
            if open.group_rows == group_rows {
                self.encoders
                    .finish_group(open)
                    .map_err(pq_err(&open.path))?;
            }
        }
        Ok(())
    }
}

/// A Parquet file being written: the file writer, and how far its row group is.
struct OpenFile {
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    path: PathBuf,
    /// The hour (ns / [`HOUR_NS`]) of a partition file; `u64::MAX` for a single file.
    hour: u64,
    /// Rows in the row group being encoded.
    group_rows: usize,
    /// Row groups written.
    groups: usize,
}

/// Encodes the columns of each row group on two threads, the writer thread and a
/// second one, so that `convert` to Parquet uses both cores of a small machine (one
/// thread encoding all columns was the bound of `.cmc` → `.parquet`; docs/perf.md).
/// Each thread owns the [`ArrowColumnWriter`]s of its columns for the row group in
/// progress; a finished row group's column chunks are appended to the file in order.
struct ColumnEncoders {
    /// Column indexes (in schema order) the second thread encodes.
    second: Vec<usize>,
    /// This thread's column writers for the row group in progress, by column index.
    local: Vec<(usize, ArrowColumnWriter)>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<parquet::errors::Result<Vec<(usize, ArrowColumnChunk)>>>,
    thread: Option<JoinHandle<()>>,
}

/// Work for the second encoder thread.
enum Job {
    /// The column writers of a new row group.
    Start(Vec<(usize, ArrowColumnWriter)>),
    /// Leaves of its columns, in the order of its writers.
    Write(Vec<ArrowLeafColumn>),
    /// Close the writers and send the column chunks back.
    Finish,
}

impl ColumnEncoders {
    fn start(schema: &SchemaRef) -> Result<ColumnEncoders, ConvertError> {
        let second = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| SECOND_THREAD_COLUMNS.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let (jobs, from_writer) = sync_channel::<Job>(BATCHES);
        let (to_writer, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("canmc-parquet-2".into())
            .spawn(move || {
                let mut writers: Vec<(usize, ArrowColumnWriter)> = Vec::new();
                let mut result = Ok(());
                for job in from_writer {
                    match job {
                        Job::Start(w) => {
                            writers = w;
                            result = Ok(());
                        }
                        Job::Write(leaves) => {
                            if result.is_ok() {
                                result = writers
                                    .iter_mut()
                                    .zip(&leaves)
                                    .try_for_each(|((_, w), leaf)| w.write(leaf));
                            }
                        }
                        Job::Finish => {
                            let chunks = std::mem::replace(&mut result, Ok(())).and_then(|()| {
                                std::mem::take(&mut writers)
                                    .into_iter()
                                    .map(|(i, w)| w.close().map(|c| (i, c)))
                                    .collect()
                            });
                            if to_writer.send(chunks).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| ConvertError::Io {
                path: PathBuf::from("(Parquet encoder thread)"),
                source: e,
            })?;
        Ok(ColumnEncoders {
            second,
            local: Vec::new(),
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Encodes `batch` (rows that fit in the row group in progress), starting a row
    /// group if none is.
    fn write(&mut self, open: &mut OpenFile, batch: &RecordBatch) -> parquet::errors::Result<()> {
        if open.group_rows == 0 {
            let mut second = Vec::with_capacity(self.second.len());
            for (i, w) in open
                .factory
                .create_column_writers(open.groups)?
                .into_iter()
                .enumerate()
            {
                if self.second.contains(&i) {
                    second.push((i, w));
                } else {
                    self.local.push((i, w));
                }
            }
            self.send(Job::Start(second))?;
        }
        let mut second = Vec::with_capacity(self.second.len());
        let mut local = self.local.iter_mut();
        for (i, (field, column)) in batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .enumerate()
        {
            // A flat schema: one leaf per column.
            for leaf in compute_leaves(field, column)? {
                if self.second.contains(&i) {
                    second.push(leaf);
                } else if let Some((_, w)) = local.next() {
                    w.write(&leaf)?;
                }
            }
        }
        self.send(Job::Write(second))?;
        open.group_rows += batch.num_rows();
        Ok(())
    }

    /// Closes the row group in progress and appends its column chunks to the file.
    fn finish_group(&mut self, open: &mut OpenFile) -> parquet::errors::Result<()> {
        self.send(Job::Finish)?;
        let mut chunks = std::mem::take(&mut self.local)
            .into_iter()
            .map(|(i, w)| w.close().map(|c| (i, c)))
            .collect::<parquet::errors::Result<Vec<_>>>()?;
        let theirs = self.done.recv().map_err(|_| stopped_thread())??;
        chunks.extend(theirs);
        chunks.sort_by_key(|(i, _)| *i);
        let mut group = open.writer.next_row_group()?;
        for (_, chunk) in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        open.groups += 1;
        open.group_rows = 0;
        Ok(())
    }

    fn send(&self, job: Job) -> parquet::errors::Result<()> {
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(stopped_thread)
    }
}

fn stopped_thread() -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::General("the second Parquet encoder thread stopped".into())
}

impl Drop for ColumnEncoders {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const HOUR_NS: u64 = 3_600_000_000_000;

fn event_ns(e: &Event) -> u64 {
    match *e {
        Event::Frame(ref f) => f.timestamp_ns,
        Event::Loss { timestamp_ns, .. } | Event::KernelDrops { timestamp_ns, .. } => timestamp_ns,
    }
}

/// The Hive partition folder (`date=YYYY-MM-DD/hour=HH`) of a time and the name of a
/// part file started at that time.
pub fn partition_path(ns: u64, pid: u32, n: u64) -> (String, String) {
    let secs = ns / 1_000_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let hour = secs % 86_400 / 3600;
    (
        format!("date={y:04}-{m:02}-{d:02}/hour={hour:02}"),
        format!("part-{ns:019}-{pid}-{n}.parquet"),
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
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

fn pq_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> ConvertError + '_ {
    move |e| ConvertError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    }
}

/// The text of the last channel and sender seen: both repeat from frame to frame.
#[derive(Default)]
struct StrCache {
    channel: Option<(Channel, String)>,
    sender: Option<(SenderAddr, String)>,
}

impl StrCache {
    fn channel(&mut self, c: &Channel) -> Option<&str> {
        if c.is_none() {
            return None;
        }
        if self.channel.as_ref().map(|x| &x.0) != Some(c) {
            let text = match c.get() {
                ChannelRef::Int(n) => n.to_string(),
                ChannelRef::Str(s) => s.to_string(),
                ChannelRef::None => String::new(),
            };
            self.channel = Some((*c, text));
        }
        self.channel.as_ref().map(|x| x.1.as_str())
    }

    fn sender(&mut self, s: &SenderAddr) -> Option<&str> {
        let sa = s.get()?;
        if self.sender.as_ref().map(|x| &x.0) != Some(s) {
            self.sender = Some((*s, sa.to_string()));
        }
        self.sender.as_ref().map(|x| x.1.as_str())
    }
}

fn build_batch(schema: &SchemaRef, events: &[Event], cache: &mut StrCache) -> RecordBatch {
    let n = events.len();
    let mut ts = Vec::with_capacity(n);
    let mut event = StringBuilder::with_capacity(n, n * 5);
    let mut channel = StringBuilder::with_capacity(n, n * 4);
    let mut id = UInt32Builder::with_capacity(n);
    let mut fl: [BooleanBuilder; 6] = std::array::from_fn(|_| BooleanBuilder::with_capacity(n));
    let mut dir = StringBuilder::with_capacity(n, n * 2);
    let mut dlc = UInt8Builder::with_capacity(n);
    let mut data = BinaryBuilder::with_capacity(n, n * 8);
    let mut sender = StringBuilder::with_capacity(n, n * 16);
    let mut lost = UInt64Builder::with_capacity(n);
    const BITS: [u8; 6] = [
        flags::EXTENDED,
        flags::RTR,
        flags::ERROR,
        flags::FD,
        flags::BRS,
        flags::ESI,
    ];
    for e in events {
        ts.push(event_ns(e).min(i64::MAX as u64) as i64);
        match e {
            Event::Frame(f) => {
                event.append_value("frame");
                channel.append_option(cache.channel(&f.channel));
                id.append_value(f.id);
                for (b, bit) in fl.iter_mut().zip(BITS) {
                    b.append_value(f.flags & bit != 0);
                }
                dir.append_value(match f.direction() {
                    Direction::Rx => "rx",
                    Direction::Tx => "tx",
                });
                dlc.append_value(f.dlc());
                data.append_value(f.payload());
                sender.append_option(cache.sender(&f.sender));
                lost.append_null();
            }
            Event::Loss {
                sender: s, lost: l, ..
            } => {
                event.append_value("loss");
                append_event_nulls(
                    &mut channel,
                    &mut id,
                    &mut fl,
                    &mut dir,
                    &mut dlc,
                    &mut data,
                );
                sender.append_option(cache.sender(s));
                lost.append_value(*l);
            }
            Event::KernelDrops { count, .. } => {
                event.append_value("kernel_drops");
                append_event_nulls(
                    &mut channel,
                    &mut id,
                    &mut fl,
                    &mut dir,
                    &mut dlc,
                    &mut data,
                );
                sender.append_null();
                lost.append_value(*count);
            }
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(event.finish()),
        Arc::new(channel.finish()),
        Arc::new(id.finish()),
    ];
    for b in &mut fl {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(dir.finish()));
    cols.push(Arc::new(dlc.finish()));
    cols.push(Arc::new(data.finish()));
    cols.push(Arc::new(sender.finish()));
    cols.push(Arc::new(lost.finish()));
    RecordBatch::try_new(schema.clone(), cols).expect("columns match the schema")
}

fn append_event_nulls(
    channel: &mut StringBuilder,
    id: &mut UInt32Builder,
    fl: &mut [BooleanBuilder; 6],
    dir: &mut StringBuilder,
    dlc: &mut UInt8Builder,
    data: &mut BinaryBuilder,
) {
    channel.append_null();
    id.append_null();
    for b in fl.iter_mut() {
        b.append_null();
    }
    dir.append_null();
    dlc.append_null();
    data.append_null();
}

/// Rows read per record batch.
const READ_BATCH: usize = 8192;

/// Reads a Parquet capture written by canmc (or any file with its column names and
/// types; extra columns are ignored). A row that is not a valid frame stops reading with
/// an error naming the row, or with `skip_bad` is counted and skipped; a damaged file
/// yields the rows before the damage, then an error.
pub fn read(
    path: &Path,
    opts: ReadOptions,
    f: &mut dyn FnMut(&Event) -> bool,
) -> Result<ReadStats, ConvertError> {
    let mut stats = ReadStats::default();
    let file = File::open(path).map_err(io_err(path))?;
    let incomplete = |stats: &ReadStats, what: String| ConvertError::Incomplete {
        path: path.to_path_buf(),
        message: format!("{what}; stopped there after {} events", stats.events),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| incomplete(&stats, format!("not a readable Parquet file: {e}")))?;
    let reader = builder
        .with_batch_size(READ_BATCH)
        .build()
        .map_err(|e| incomplete(&stats, e.to_string()))?;
    let mut row = 0u64;
    let mut events = 0u64;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                stats.events = events;
                return Err(incomplete(&stats, format!("row {row}: {e}")));
            }
        };
        let cols = Columns::of(&batch).map_err(|m| {
            stats.events = events;
            incomplete(&stats, m)
        })?;
        for i in 0..batch.num_rows() {
            row += 1;
            let ev = match cols.event(i) {
                Ok(ev) => ev,
                Err(_) if opts.skip_bad => {
                    stats.skipped += 1;
                    continue;
                }
                Err(message) => {
                    return Err(ConvertError::Parse {
                        path: path.to_path_buf(),
                        line: row,
                        message: format!("row {row}: {message} (use --skip-bad to skip such rows)"),
                    });
                }
            };
            if !opts.offer(event_ns(&ev), &ev, &mut events, f) {
                stats.events = events;
                stats.stopped = true;
                return Ok(stats);
            }
        }
    }
    stats.events = events;
    Ok(stats)
}

/// The columns of one record batch, typed.
struct Columns<'a> {
    ts: &'a TimestampNanosecondArray,
    event: &'a StringArray,
    channel: &'a StringArray,
    id: &'a UInt32Array,
    fl: [&'a BooleanArray; 6],
    dir: &'a StringArray,
    dlc: &'a UInt8Array,
    data: &'a BinaryArray,
    sender: &'a StringArray,
    lost: &'a UInt64Array,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, String> {
        fn col<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, String> {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}`"))?
                .as_any()
                .downcast_ref::<T>()
                .ok_or_else(|| {
                    format!(
                        "column `{name}` has type {:?}",
                        batch.column_by_name(name).map(|c| c.data_type().clone())
                    )
                })
        }
        Ok(Columns {
            ts: col(batch, "timestamp")?,
            event: col(batch, "event")?,
            channel: col(batch, "channel")?,
            id: col(batch, "id")?,
            fl: [
                col(batch, "extended")?,
                col(batch, "remote")?,
                col(batch, "error")?,
                col(batch, "fd")?,
                col(batch, "brs")?,
                col(batch, "esi")?,
            ],
            dir: col(batch, "direction")?,
            dlc: col(batch, "dlc")?,
            data: col(batch, "data")?,
            sender: col(batch, "sender")?,
            lost: col(batch, "lost")?,
        })
    }

    fn sender(&self, i: usize) -> Result<SenderAddr, String> {
        if self.sender.is_null(i) {
            return Ok(SenderAddr::NONE);
        }
        let text = self.sender.value(i);
        text.parse::<std::net::SocketAddr>()
            .map(SenderAddr::from)
            .map_err(|_| format!("sender `{text}` is not ip:port"))
    }

    fn lost(&self, i: usize) -> Result<u64, String> {
        if self.lost.is_null(i) {
            return Err("a loss row without `lost`".into());
        }
        Ok(self.lost.value(i))
    }

    fn event(&self, i: usize) -> Result<Event, String> {
        if self.ts.is_null(i) || self.ts.value(i) < 0 {
            return Err("no timestamp or one before 1970".into());
        }
        let ns = self.ts.value(i) as u64;
        let kind = if self.event.is_null(i) {
            "frame"
        } else {
            self.event.value(i)
        };
        match kind {
            "frame" => self.frame(i, ns).map(Event::Frame),
            "loss" => Ok(Event::Loss {
                sender: self.sender(i)?,
                lost: self.lost(i)?,
                timestamp_ns: ns,
            }),
            "kernel_drops" => Ok(Event::KernelDrops {
                count: self.lost(i)?,
                timestamp_ns: ns,
            }),
            other => Err(format!("unknown event `{other}`")),
        }
    }

    fn frame(&self, i: usize, ns: u64) -> Result<CanFrame, String> {
        if self.id.is_null(i) || self.dlc.is_null(i) || self.data.is_null(i) {
            return Err("a frame row without id, dlc or data".into());
        }
        let mut bits = 0u8;
        for (col, bit) in self.fl.iter().zip([
            flags::EXTENDED,
            flags::RTR,
            flags::ERROR,
            flags::FD,
            flags::BRS,
            flags::ESI,
        ]) {
            if !col.is_null(i) && col.value(i) {
                bits |= bit;
            }
        }
        let data = self.data.value(i);
        if data.len() > 64 {
            return Err(format!("{} data bytes", data.len()));
        }
        let dlc = self.dlc.value(i);
        let mut frame = if bits & flags::RTR != 0 {
            if !data.is_empty() {
                return Err("a remote frame with data".into());
            }
            let len = crate::frame::dlc_to_len(dlc).min(8);
            if dlc > 8 {
                return Err(format!("remote frame DLC {dlc}"));
            }
            CanFrame::remote(self.id.value(i), bits & flags::EXTENDED != 0, len)
                .map_err(|e| e.to_string())?
        } else {
            CanFrame::new(self.id.value(i), bits, data).map_err(|e| e.to_string())?
        };
        if bits & flags::RTR != 0 {
            frame.flags = bits;
        }
        let want = frame.dlc();
        if dlc != want {
            if frame.is_fd() || frame.is_remote() || frame.len != 8 || !(9..=15).contains(&dlc) {
                return Err(format!("DLC {dlc} does not match {} data bytes", frame.len));
            }
            frame.raw_dlc = dlc;
        }
        frame.timestamp_ns = ns;
        frame.channel = if self.channel.is_null(i) {
            Channel::NONE
        } else {
            parse_channel(self.channel.value(i))?
        };
        frame.set_direction(match (self.dir.is_null(i), self.dir.value(i)) {
            (false, "tx") => Direction::Tx,
            (true, _) | (false, "rx") => Direction::Rx,
            (false, other) => return Err(format!("direction `{other}`")),
        });
        frame.sender = self.sender(i)?;
        frame.validate().map_err(|e| e.to_string())?;
        Ok(frame)
    }
}

/// A channel's text: all digits (with an optional `-`) is an integer channel.
fn parse_channel(text: &str) -> Result<Channel, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Channel::int(n));
        }
    }
    Channel::str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Event> {
        let mut out = Vec::new();
        let v4: std::net::SocketAddr = "127.0.0.1:43113".parse().unwrap();
        let texts = [
            "123#DEADBEEF",
            "12345678#00",
            "123#R",
            "7FF#R4",
            "123##5000102030405060708090A0B",
            "1FFFFFFF##3",
            "20000080#0000000000000000",
            "001#1122334455667788",
        ];
        for (i, t) in texts.iter().enumerate() {
            let mut f: CanFrame = t.parse().unwrap();
            f.timestamp_ns = 1_796_288_400_000_000_000 + i as u64 * 1_000_123;
            f.channel = match i % 3 {
                0 => Channel::NONE,
                1 => Channel::int(i as i64),
                _ => Channel::str("vcan0").unwrap(),
            };
            if i % 2 == 1 {
                f.set_direction(Direction::Tx);
                f.sender = SenderAddr::from(v4);
            }
            if i == 7 {
                f.raw_dlc = 13;
            }
            out.push(Event::Frame(f));
            if i == 3 {
                out.push(Event::Loss {
                    sender: SenderAddr::from(v4),
                    lost: 17,
                    timestamp_ns: f.timestamp_ns + 1,
                });
                out.push(Event::KernelDrops {
                    count: 3,
                    timestamp_ns: f.timestamp_ns + 2,
                });
            }
        }
        out
    }

    fn read_all(path: &Path) -> Vec<Event> {
        let mut got = Vec::new();
        read(path, ReadOptions::default(), &mut |e| {
            got.push(*e);
            true
        })
        .unwrap();
        got
    }

    #[test]
    fn every_field_and_loss_round_trips() {
        let dir = std::env::temp_dir().join(format!("canmc-pq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for c in [Compression::Zstd, Compression::Snappy, Compression::None] {
            let path = dir.join(format!("{c:?}.parquet"));
            let opts = ParquetOptions {
                compression: c,
                row_group_rows: 3,
                ..Default::default()
            };
            let mut w: Box<dyn FrameWriter> = Box::new(ParquetWriter::create(&path, opts).unwrap());
            for e in sample() {
                w.write_event(&e).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(read_all(&path), sample(), "{c:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn row_groups_split_across_batches_keep_every_row_in_order() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = std::env::temp_dir().join(format!("canmc-pq-rg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = sample();
        let events: Vec<Event> = (0..200_000u64)
            .map(|i| match base[i as usize % base.len()] {
                Event::Frame(mut f) => {
                    f.timestamp_ns += i * 1000;
                    f.id = (i % 0x7FF) as u32 | (f.id & !0x7FF);
                    Event::Frame(f)
                }
                other => other,
            })
            .collect();
        // A row group smaller than a batch, one not dividing it, one larger.
        for (rows, groups) in [(50_000, 4), (70_001, 3), (1 << 20, 1)] {
            let path = dir.join(format!("rg{rows}.parquet"));
            let opts = ParquetOptions {
                row_group_rows: rows,
                ..Default::default()
            };
            let mut w: Box<dyn FrameWriter> = Box::new(ParquetWriter::create(&path, opts).unwrap());
            for (i, e) in events.iter().enumerate() {
                w.write_event(e).unwrap();
                if i % 30_000 == 0 {
                    w.flush().unwrap();
                }
            }
            w.finish().unwrap();
            assert!(read_all(&path) == events, "row groups of {rows}");
            let meta = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
            assert_eq!(
                meta.metadata().num_row_groups(),
                groups,
                "row groups of {rows}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hour_partitions_are_hive_folders() {
        assert_eq!(
            partition_path(1_796_288_400_000_000_000 - 1, 7, 0).0,
            "date=2026-12-03/hour=08"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        let dir = std::env::temp_dir().join(format!("canmc-pq-part-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = ParquetOptions {
            partition: Partition::Hour,
            ..Default::default()
        };
        let mut w: Box<dyn FrameWriter> = Box::new(ParquetWriter::create(&dir, opts).unwrap());
        let mut f: CanFrame = "123#01".parse().unwrap();
        let base = 1_796_288_400_000_000_000u64; // 2026-12-03T09:00:00Z
        for (k, ns) in [
            base - 1,
            base,
            base + 3_599_999_999_999,
            base + 3_600_000_000_000,
        ]
        .into_iter()
        .enumerate()
        {
            f.timestamp_ns = ns;
            f.data[0] = k as u8;
            w.write_frame(&f).unwrap();
        }
        w.finish().unwrap();
        let mut found = Vec::new();
        for (hour, n) in [
            ("date=2026-12-03/hour=08", 1),
            ("date=2026-12-03/hour=09", 2),
            ("date=2026-12-03/hour=10", 1),
        ] {
            let sub = dir.join(hour);
            let files: Vec<_> = std::fs::read_dir(&sub)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(files.len(), 1, "{hour}: {files:?}");
            let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                name.starts_with("part-") && name.ends_with(".parquet"),
                "{name}"
            );
            let got = read_all(&files[0]);
            assert_eq!(got.len(), n, "{hour}");
            found.extend(got);
        }
        let order: Vec<u8> = found
            .iter()
            .map(|e| match e {
                Event::Frame(f) => f.data[0],
                _ => 99,
            })
            .collect();
        assert_eq!(order, [0, 1, 2, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("canmc-pq-trunc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.parquet");
        let mut w: Box<dyn FrameWriter> =
            Box::new(ParquetWriter::create(&path, ParquetOptions::default()).unwrap());
        for e in sample() {
            w.write_event(&e).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 4, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let r = read(&path, ReadOptions::default(), &mut |_| true);
            assert!(r.is_err(), "cut {cut}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
