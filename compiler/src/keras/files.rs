//! Opening Keras files: a `.keras` zip (config.json + model.weights.h5) or a legacy HDF5 file
//! (`model_config` attribute + `model_weights` group). Recognised by content, not extension.

use super::error::FileError;
use super::hdf5::{Panicked, guard};
use super::weights::{ArchiveLayout, WeightStore};
use hdf5_reader::Hdf5File;
use serde_json::Value;
use std::io::{Cursor, Read};

/// A model's configuration and its weights.
pub struct KerasFile {
    /// The model config: `{"class_name": ..., "config": {...}}`.
    pub config: Value,
    /// Where the weights live.
    pub weights: WeightStore,
    /// The `keras_version` that wrote the file, when it says.
    pub keras_version: Option<String>,
}

impl KerasFile {
    /// Whether Keras 3 wrote the file (by its version; without one, by the `module` keys only
    /// Keras 3's configs carry). Some activations differ between the generations.
    pub fn is_keras3(&self) -> bool {
        match &self.keras_version {
            Some(v) => v.split('.').next().and_then(|m| m.parse::<u32>().ok()) >= Some(3),
            None => self.config.get("module").is_some(),
        }
    }
}

const ZIP_MAGIC: &[u8] = b"PK";
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";
/// Largest member read from a .keras archive.
const MAX_MEMBER_BYTES: u64 = 8 << 30;

/// Recognise and open a Keras file. Errors say what the bytes are instead.
pub fn open(bytes: Vec<u8>) -> Result<KerasFile, FileError> {
    if bytes.is_empty() {
        return Err(FileError::Empty);
    }
    if bytes.starts_with(ZIP_MAGIC) {
        open_keras_zip(bytes)
    } else if bytes.starts_with(HDF5_MAGIC) {
        open_h5(bytes)
    } else {
        Err(FileError::Unrecognised)
    }
}

fn open_hdf5(bytes: Vec<u8>, what: &'static str) -> Result<Hdf5File, FileError> {
    // hdf5-reader is defensive, but the bytes come from anywhere: a panic inside it must not
    // take the process down.
    guard(move || Hdf5File::from_vec(bytes))
        .map_err(|Panicked| FileError::Hdf5Panic { what })?
        .map_err(|e| FileError::Hdf5 {
            what,
            reason: e.to_string(),
        })
}

fn open_keras_zip(bytes: Vec<u8>) -> Result<KerasFile, FileError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(FileError::Zip)?;
    let mut member = |name: &'static str| -> Result<Vec<u8>, FileError> {
        let mut f = zip.by_name(name).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => FileError::MissingMember(name),
            source => FileError::UnreadableMember { name, source },
        })?;
        if f.size() > MAX_MEMBER_BYTES {
            return Err(FileError::MemberTooLarge {
                name,
                size: f.size(),
            });
        }
        let mut buf = Vec::with_capacity(f.size().min(64 << 20) as usize);
        f.by_ref()
            .take(MAX_MEMBER_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|source| FileError::DamagedMember { name, source })?;
        Ok(buf)
    };
    let config = member("config.json")?;
    let weights = member("model.weights.h5")?;
    // `metadata.json` names the Keras that wrote the archive, which decides how the weight
    // groups are named (an archive without it is read by the container it holds).
    let version = match member("metadata.json") {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|m| m.get("keras_version")?.as_str().map(str::to_string)),
        Err(FileError::MissingMember(_)) => None,
        Err(e) => return Err(e),
    };
    let config: Value = serde_json::from_slice(&config).map_err(FileError::ConfigJson)?;
    let h5 = open_hdf5(weights, "model.weights.h5")?;
    let what = "model.weights.h5";
    let has_layers =
        guard(|| h5.group("/layers").is_ok()).map_err(|Panicked| FileError::Hdf5Panic { what })?;
    let layout = ArchiveLayout::new(version.as_deref(), has_layers);
    Ok(KerasFile {
        config,
        weights: WeightStore::Archive(h5, layout),
        keras_version: version,
    })
}

fn open_h5(bytes: Vec<u8>) -> Result<KerasFile, FileError> {
    let h5 = open_hdf5(bytes, "HDF5 file")?;
    let what = "HDF5 file";
    let root = guard(|| h5.root_group())
        .map_err(|Panicked| FileError::Hdf5Panic { what })?
        .map_err(|e| FileError::RootGroup(e.to_string()))?;
    let text = guard(|| root.attribute("model_config").and_then(|a| a.read_string()))
        .map_err(|Panicked| FileError::Hdf5Panic { what })?
        .map_err(|_| FileError::NoModelConfig)?;
    let config: Value = serde_json::from_str(&text).map_err(FileError::ModelConfigJson)?;
    let keras_version = guard(|| {
        root.attribute("keras_version")
            .and_then(|a| a.read_string())
    })
    .map_err(|Panicked| FileError::Hdf5Panic { what })?
    .ok();
    Ok(KerasFile {
        config,
        weights: WeightStore::Legacy(h5),
        keras_version,
    })
}
