//! Opening Keras files: a `.keras` zip (config.json + model.weights.h5) or a legacy HDF5 file
//! (`model_config` attribute + `model_weights` group). Recognised by content, not extension.

use super::weights::WeightStore;
use hdf5_reader::Hdf5File;
use serde_json::Value;
use std::io::{Cursor, Read};

/// A model's configuration and its weights.
pub struct KerasFile {
    /// The model config: `{"class_name": ..., "config": {...}}`.
    pub config: Value,
    /// Where the weights live.
    pub weights: WeightStore,
}

const ZIP_MAGIC: &[u8] = b"PK";
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";
/// Largest member read from a .keras archive.
const MAX_MEMBER_BYTES: u64 = 8 << 30;

/// Recognise and open a Keras file. Errors say what the bytes are instead.
pub fn open(bytes: Vec<u8>) -> Result<KerasFile, String> {
    if bytes.is_empty() {
        return Err("the file is empty; expected a .keras archive or an HDF5 .h5 model".into());
    }
    if bytes.starts_with(ZIP_MAGIC) {
        open_keras_zip(bytes)
    } else if bytes.starts_with(HDF5_MAGIC) {
        open_h5(bytes)
    } else {
        Err("not a Keras model: neither a .keras zip archive nor an HDF5 file".into())
    }
}

fn open_hdf5(bytes: Vec<u8>, what: &str) -> Result<Hdf5File, String> {
    // hdf5-reader is defensive, but the bytes come from anywhere: a panic inside it must not
    // take the process down.
    std::panic::catch_unwind(move || Hdf5File::from_vec(bytes))
        .map_err(|_| format!("{what}: the HDF5 reader failed on malformed data"))?
        .map_err(|e| format!("{what}: not a readable HDF5 file ({e})"))
}

fn open_keras_zip(bytes: Vec<u8>) -> Result<KerasFile, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable .keras archive ({e})"))?;
    let mut member = |name: &str| -> Result<Vec<u8>, String> {
        let mut f = zip.by_name(name).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => format!("the .keras archive has no `{name}`"),
            e => format!("`{name}` in the .keras archive is unreadable ({e})"),
        })?;
        if f.size() > MAX_MEMBER_BYTES {
            return Err(format!(
                "`{name}` is {} bytes, more than snnc reads",
                f.size()
            ));
        }
        let mut buf = Vec::with_capacity(f.size().min(64 << 20) as usize);
        f.by_ref()
            .take(MAX_MEMBER_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("`{name}` in the .keras archive is damaged ({e})"))?;
        Ok(buf)
    };
    let config = member("config.json")?;
    let weights = member("model.weights.h5")?;
    let config: Value = serde_json::from_slice(&config)
        .map_err(|e| format!("config.json is not valid JSON ({e})"))?;
    let h5 = open_hdf5(weights, "model.weights.h5")?;
    Ok(KerasFile {
        config,
        weights: WeightStore::Archive(h5),
    })
}

fn open_h5(bytes: Vec<u8>) -> Result<KerasFile, String> {
    let h5 = open_hdf5(bytes, "HDF5 file")?;
    let root = h5
        .root_group()
        .map_err(|e| format!("HDF5 root group unreadable ({e})"))?;
    let text = root
        .attribute("model_config")
        .and_then(|a| a.read_string())
        .map_err(|_| {
            "an HDF5 file without a `model_config` attribute: weights only, or not a Keras model"
                .to_string()
        })?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| format!("the `model_config` attribute is not valid JSON ({e})"))?;
    Ok(KerasFile {
        config,
        weights: WeightStore::Legacy(h5),
    })
}
