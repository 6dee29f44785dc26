//! Output options of the file formats that have any (Parquet, MF4), shared by `record`
//! and `convert`, and how they become the library's [`WriterOptions`].

use canmc::convert::{ConvertError, FileFormat, WriterOptions};
use clap::Args;

/// Output options of the file formats that have any (`record`, `convert`).
#[derive(Args, Clone, Debug)]
pub(crate) struct OutputOpts {
    /// Write Hive-style Parquet partitions into the output folder:
    /// date=YYYY-MM-DD/hour=HH/part-….parquet (UTC).
    #[arg(long, value_name = "hour")]
    pub(crate) partition: Option<PartitionArg>,
    /// Parquet column compression.
    #[arg(long, value_name = "zstd|snappy|none", default_value = "zstd")]
    pub(crate) compression: CompressionArg,
    /// Parquet rows per row group.
    #[arg(long, value_name = "ROWS", default_value_t = canmc::convert::parquet::DEFAULT_ROW_GROUP,
          value_parser = clap::builder::TypedValueParser::map(
              clap::value_parser!(u64).range(1..=1 << 26), |v| v as usize))]
    pub(crate) row_group: usize,
    /// MF4: write deflated (DZ) data blocks.
    #[arg(long)]
    pub(crate) mf4_compress: bool,
    /// MF4: one unsorted data group (records in arrival order) instead of one per frame kind.
    #[arg(long)]
    pub(crate) mf4_unsorted: bool,
}

/// `--partition`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum PartitionArg {
    /// One folder per UTC hour.
    Hour,
}

/// `--compression`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum CompressionArg {
    Zstd,
    Snappy,
    None,
}

impl OutputOpts {
    /// The format `path` is written in: by extension, or Parquet with --partition.
    pub(crate) fn format(&self, path: &std::path::Path) -> Result<FileFormat, ConvertError> {
        if self.partition.is_some() {
            return Ok(FileFormat::Parquet);
        }
        FileFormat::from_path(path)
    }

    /// These options in `w`.
    pub(crate) fn apply(&self, w: &mut WriterOptions) {
        use canmc::convert::{mf4, parquet};
        w.mf4 = mf4::Mf4Options {
            compress: self.mf4_compress,
            layout: if self.mf4_unsorted {
                mf4::Layout::Unsorted
            } else {
                mf4::Layout::Sorted
            },
        };
        w.parquet.partition = match self.partition {
            Some(PartitionArg::Hour) => parquet::Partition::Hour,
            None => parquet::Partition::None,
        };
        w.parquet.row_group_rows = self.row_group;
        w.parquet.compression = match self.compression {
            CompressionArg::Zstd => parquet::Compression::Zstd,
            CompressionArg::Snappy => parquet::Compression::Snappy,
            CompressionArg::None => parquet::Compression::None,
        };
    }
}
