//! The `.snn` artifact: one zip holding `module.sir` (the canonical text, large constants as
//! checksums), `constants.npz` (their values, keyed by constant name) and `meta.json`.

use crate::module::{ConstData, Module};
use crate::parse::{ParseError, parse};
use crate::print::INLINE_LIMIT;
use crate::types::DType;
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzReader, NpzWriter};
use std::io::{Cursor, Read, Seek, Write};
use thiserror::Error;

/// Artifact format version written in `meta.json`.
pub const SNN_FORMAT_VERSION: u32 = 1;

/// `meta.json`: what the archive holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    /// Always `snn`.
    format: String,
    /// [`SNN_FORMAT_VERSION`] when written.
    version: u32,
}

/// Largest uncompressed entry accepted (protects against zip bombs and absurd files).
const MAX_ENTRY_BYTES: u64 = 16 << 30;

/// What went wrong reading or writing a `.snn` artifact.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// Not a zip archive, or a damaged one.
    #[error("not a readable .snn archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// An entry could not be decompressed.
    #[error("not a readable .snn archive: {name}: {source}")]
    Entry {
        /// Entry name.
        name: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// `module.sir` is not text.
    #[error("not a readable .snn archive: module.sir is not UTF-8")]
    NotUtf8,
    /// A required entry is absent.
    #[error("the archive has no `{0}` entry")]
    MissingEntry(&'static str),
    /// An entry is larger than the reader accepts.
    #[error(
        "entry `{name}` is {size} bytes uncompressed, more than the {MAX_ENTRY_BYTES}-byte limit"
    )]
    TooLarge {
        /// Entry name.
        name: String,
        /// Its uncompressed size.
        size: u64,
    },
    /// The module text does not parse.
    #[error("module.sir: {0}")]
    Parse(#[from] ParseError),
    /// `meta.json` is not understood.
    #[error("meta.json: {0}")]
    Meta(#[from] serde_json::Error),
    /// `meta.json` names another format or version.
    #[error(
        "meta.json: format {format} version {version}, this snnc reads snn version {SNN_FORMAT_VERSION}"
    )]
    Version {
        /// The format named.
        format: String,
        /// The version named.
        version: u32,
    },
    /// The constants file is damaged or does not match the module.
    #[error("constants.npz: {0}")]
    Constants(String),
    /// The module holds a constant whose values are unknown, so it cannot be saved.
    #[error("constant @{0} has no data (only a checksum); attach its values before saving")]
    NoData(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Write a module as a `.snn` archive.
pub fn write_snn<W: Write + Seek>(module: &Module, writer: W) -> Result<(), ArtifactError> {
    let mut npz_bytes = Cursor::new(Vec::new());
    {
        let mut npz = NpzWriter::new(&mut npz_bytes);
        for c in &module.constants {
            let n = match c.data.len() {
                None => return Err(ArtifactError::NoData(c.name.clone())),
                Some(n) => n,
            };
            if n <= INLINE_LIMIT {
                continue;
            }
            let shape = IxDyn(&c.ty.shape);
            let res = match &c.data {
                ConstData::F32(v) => ArrayD::from_shape_vec(shape, v.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|a| {
                        npz.add_array(c.name.as_str(), &a)
                            .map_err(|e| e.to_string())
                    }),
                ConstData::I32(v) => ArrayD::from_shape_vec(shape, v.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|a| {
                        npz.add_array(c.name.as_str(), &a)
                            .map_err(|e| e.to_string())
                    }),
                ConstData::External { .. } => unreachable!("rejected above"),
            };
            res.map_err(|e| ArtifactError::Constants(format!("@{}: {e}", c.name)))?;
        }
        npz.finish()
            .map_err(|e| ArtifactError::Constants(e.to_string()))?;
    }
    let mut zip = zip::ZipWriter::new(writer);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut meta = serde_json::to_string(&Meta {
        format: "snn".into(),
        version: SNN_FORMAT_VERSION,
    })?;
    meta.push('\n');
    for (name, bytes) in [
        ("meta.json", meta.into_bytes()),
        ("module.sir", module.to_string().into_bytes()),
        ("constants.npz", npz_bytes.into_inner()),
    ] {
        zip.start_file(name, opts)?;
        zip.write_all(&bytes)?;
    }
    zip.finish()?;
    Ok(())
}

fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &'static str,
) -> Result<Vec<u8>, ArtifactError> {
    let mut f = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Err(ArtifactError::MissingEntry(name)),
        Err(e) => return Err(ArtifactError::Zip(e)),
    };
    if f.size() > MAX_ENTRY_BYTES {
        return Err(ArtifactError::TooLarge {
            name: name.into(),
            size: f.size(),
        });
    }
    // The claimed size is only a hint: never reserve more than 64 MiB up front on its word.
    let mut buf = Vec::with_capacity(f.size().min(64 << 20) as usize);
    f.by_ref()
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| ArtifactError::Entry { name, source })?;
    Ok(buf)
}

/// Read a `.snn` archive. Every constant's values are checked against its type and the
/// checksum recorded in the text.
pub fn read_snn<R: Read + Seek>(reader: R) -> Result<Module, ArtifactError> {
    let mut zip = zip::ZipArchive::new(reader)?;
    let meta: Meta = serde_json::from_slice(&read_entry(&mut zip, "meta.json")?)?;
    if meta.format != "snn" || meta.version != SNN_FORMAT_VERSION {
        return Err(ArtifactError::Version {
            format: meta.format,
            version: meta.version,
        });
    }
    let text = read_entry(&mut zip, "module.sir")?;
    let text = String::from_utf8(text).map_err(|_| ArtifactError::NotUtf8)?;
    let mut module = parse(&text)?;
    let npz = read_entry(&mut zip, "constants.npz")?;
    let mut npz =
        NpzReader::new(Cursor::new(npz)).map_err(|e| ArtifactError::Constants(e.to_string()))?;
    for c in &mut module.constants {
        let ConstData::External { checksum } = c.data else {
            continue;
        };
        let bad = |e: String| ArtifactError::Constants(format!("@{}: {e}", c.name));
        let data = match c.ty.dtype {
            DType::F32 => {
                let a: ArrayD<f32> = npz.by_name(&c.name).map_err(|e| bad(e.to_string()))?;
                if a.shape() != c.ty.shape.as_slice() {
                    return Err(bad(format!(
                        "stored shape {:?}, the module says {}",
                        a.shape(),
                        c.ty
                    )));
                }
                ConstData::F32(a.iter().copied().collect())
            }
            DType::I32 => {
                let a: ArrayD<i32> = npz.by_name(&c.name).map_err(|e| bad(e.to_string()))?;
                if a.shape() != c.ty.shape.as_slice() {
                    return Err(bad(format!(
                        "stored shape {:?}, the module says {}",
                        a.shape(),
                        c.ty
                    )));
                }
                ConstData::I32(a.iter().copied().collect())
            }
        };
        if data.checksum() != checksum {
            return Err(bad(format!(
                "checksum #{:08x} does not match the recorded #{checksum:08x}",
                data.checksum()
            )));
        }
        c.data = data;
    }
    Ok(module)
}

/// Save to a file. The file is written beside the target and renamed into place, so a failed
/// write never leaves a half-written artifact.
pub fn save_snn(module: &Module, path: &std::path::Path) -> Result<(), ArtifactError> {
    let tmp = path.with_extension("snn.partial");
    let result = (|| {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        write_snn(module, &mut w)?;
        w.flush()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Load from a file.
pub fn load_snn(path: &std::path::Path) -> Result<Module, ArtifactError> {
    let f = std::fs::File::open(path)?;
    read_snn(std::io::BufReader::new(f))
}
