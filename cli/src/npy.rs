//! Reading inputs and labels from .npy files of any common numeric dtype, writing results.

use anyhow::{Context, Result, bail};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::{NpzWriter, ReadNpyExt, WriteNpyExt};
use std::io::Cursor;
use std::path::Path;

/// Read a .npy array as f32, converting from f64, integer and boolean dtypes.
pub fn read_f32(path: &Path) -> Result<ArrayD<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    macro_rules! try_as {
        ($t:ty) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(Cursor::new(&bytes)) {
                return Ok(a.mapv(|x| x as f32));
            }
        };
    }
    if let Ok(a) = ArrayD::<f32>::read_npy(Cursor::new(&bytes)) {
        return Ok(a);
    }
    try_as!(f64);
    try_as!(u8);
    try_as!(i8);
    try_as!(u16);
    try_as!(i16);
    try_as!(i32);
    try_as!(u32);
    try_as!(i64);
    try_as!(u64);
    if let Ok(a) = ArrayD::<bool>::read_npy(Cursor::new(&bytes)) {
        return Ok(a.mapv(|x| x as u8 as f32));
    }
    match ArrayD::<f32>::read_npy(Cursor::new(&bytes)) {
        Err(e) => bail!(
            "{}: not a readable numeric .npy array ({e})",
            path.display()
        ),
        Ok(_) => unreachable!("tried above"),
    }
}

/// Read integer class labels, shape `(n,)`.
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    let a = read_f32(path)?;
    if a.ndim() != 1 {
        bail!(
            "{}: labels must have shape (n,), got {:?}",
            path.display(),
            a.shape()
        );
    }
    a.iter()
        .map(|&x| {
            if x.fract() == 0.0 && x >= 0.0 {
                Ok(x as i64)
            } else {
                bail!("{}: label {x} is not a class index", path.display())
            }
        })
        .collect()
}

/// Write one array as .npy or several as .npz (keyed by name), through a temporary file
/// renamed into place.
pub fn write_outputs(path: &Path, arrays: &[(String, ArrayD<f32>)]) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut buf = Cursor::new(Vec::new());
    match ext.as_str() {
        "npy" => {
            if arrays.len() != 1 {
                bail!(
                    "{}: the module has {} outputs; write them to a .npz file",
                    path.display(),
                    arrays.len()
                );
            }
            arrays[0].1.write_npy(&mut buf).context("encoding .npy")?;
        }
        "npz" => {
            let mut npz = NpzWriter::new(&mut buf);
            for (name, a) in arrays {
                npz.add_array(name.as_str(), a).context("encoding .npz")?;
            }
            npz.finish().context("encoding .npz")?;
        }
        _ => bail!("{}: --output must end in .npy or .npz", path.display()),
    }
    let tmp = path.with_extension(format!("{ext}.partial"));
    std::fs::write(&tmp, buf.into_inner()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The shape of a batch slice `[start, end)` of `a` along axis 0.
pub fn batch_shape(a: &ArrayD<f32>, n: usize) -> IxDyn {
    let mut s = a.shape().to_vec();
    s[0] = n;
    IxDyn(&s)
}
