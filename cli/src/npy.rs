//! Reading inputs and labels from .npy files of any common numeric dtype, writing results.

use anyhow::{Context, Result, bail};
use ndarray::ArrayD;
use ndarray_npy::{NpzReader, NpzWriter, ReadNpyExt, WriteNpyExt};
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

/// An array written to or merged from an output file: values are float32, spike counts int32.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// Values.
    F32(ArrayD<f32>),
    /// Spike counts.
    I32(ArrayD<i32>),
}

impl Array {
    fn shape(&self) -> &[usize] {
        match self {
            Array::F32(a) => a.shape(),
            Array::I32(a) => a.shape(),
        }
    }

    fn dtype(&self) -> &'static str {
        match self {
            Array::F32(_) => "float32",
            Array::I32(_) => "int32",
        }
    }
}

/// Join arrays of one dtype (checked by the caller) along the sample axis.
fn concatenate(parts: &[Array]) -> Result<Array> {
    let f32s: Vec<_> = parts
        .iter()
        .filter_map(|a| match a {
            Array::F32(a) => Some(a.view()),
            Array::I32(_) => None,
        })
        .collect();
    let i32s: Vec<_> = parts
        .iter()
        .filter_map(|a| match a {
            Array::I32(a) => Some(a.view()),
            Array::F32(_) => None,
        })
        .collect();
    Ok(match (f32s.is_empty(), i32s.is_empty()) {
        (false, true) => Array::F32(ndarray::concatenate(ndarray::Axis(0), &f32s)?),
        (true, false) => Array::I32(ndarray::concatenate(ndarray::Axis(0), &i32s)?),
        _ => bail!("arrays of different dtypes"),
    })
}

/// Write one array as .npy or several as .npz (keyed by name), through a temporary file
/// renamed into place.
pub fn write_outputs(path: &Path, arrays: &[(String, Array)]) -> Result<()> {
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
            match &arrays[0].1 {
                Array::F32(a) => a.write_npy(&mut buf),
                Array::I32(a) => a.write_npy(&mut buf),
            }
            .context("encoding .npy")?;
        }
        "npz" => {
            let mut npz = NpzWriter::new(&mut buf);
            for (name, a) in arrays {
                match a {
                    Array::F32(a) => npz.add_array(name.as_str(), a),
                    Array::I32(a) => npz.add_array(name.as_str(), a),
                }
                .context("encoding .npz")?;
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

/// Read a `.npy` (one array, named after the file) or every array of a `.npz`: float32 arrays
/// as they are, int32 (spike probes) as they are, other numeric `.npy` dtypes as float32.
fn read_arrays(path: &Path) -> Result<Vec<(String, Array)>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "npy" => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let a = match ArrayD::<i32>::read_npy(Cursor::new(&bytes)) {
                Ok(a) => Array::I32(a),
                Err(_) => Array::F32(read_f32(path)?),
            };
            Ok(vec![(String::new(), a)])
        }
        "npz" => {
            let f =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            let mut npz = NpzReader::new(f)
                .with_context(|| format!("{}: not a readable .npz file", path.display()))?;
            let names = npz
                .names()
                .with_context(|| format!("{}: not a readable .npz file", path.display()))?;
            names
                .into_iter()
                .map(|name| {
                    let a = match npz.by_name::<ndarray::OwnedRepr<f32>, _>(&name) {
                        Ok(a) => Array::F32(a),
                        Err(_) => Array::I32(npz.by_name(&name).with_context(|| {
                            format!(
                                "{}: array `{name}` is neither float32 nor int32",
                                path.display()
                            )
                        })?),
                    };
                    Ok((name.trim_end_matches(".npy").to_string(), a))
                })
                .collect()
        }
        _ => bail!("{}: expected a .npy or .npz file", path.display()),
    }
}

/// `snnc merge`: join the outputs of runs on consecutive sample ranges (`--samples`) along the
/// sample axis, in the order given. Every file must hold the same arrays with the same shapes
/// beyond the sample axis.
pub fn merge(parts: &[std::path::PathBuf], out: &Path) -> Result<usize> {
    if parts.is_empty() {
        bail!("nothing to merge");
    }
    if parts.iter().any(|p| {
        p.canonicalize()
            .ok()
            .is_some_and(|c| out.canonicalize().ok() == Some(c))
    }) {
        bail!(
            "-o {} would overwrite one of the files merged",
            out.display()
        );
    }
    let mut merged: Vec<(String, Vec<Array>)> = Vec::new();
    for (k, p) in parts.iter().enumerate() {
        let arrays = read_arrays(p)?;
        if k == 0 {
            merged = arrays.into_iter().map(|(n, a)| (n, vec![a])).collect();
            continue;
        }
        let names =
            |v: &mut dyn Iterator<Item = &String>| v.cloned().collect::<Vec<_>>().join(", ");
        if arrays.len() != merged.len() || arrays.iter().zip(&merged).any(|((a, _), (b, _))| a != b)
        {
            bail!(
                "{} holds arrays ({}) that differ from {}'s ({})",
                p.display(),
                names(&mut arrays.iter().map(|(n, _)| n)),
                parts[0].display(),
                names(&mut merged.iter().map(|(n, _)| n))
            );
        }
        for ((name, a), (_, acc)) in arrays.into_iter().zip(&mut merged) {
            if a.shape().is_empty() || a.shape()[1..] != acc[0].shape()[1..] {
                bail!(
                    "{}: array `{name}` has shape {:?}, {} has {:?}",
                    p.display(),
                    a.shape(),
                    parts[0].display(),
                    acc[0].shape()
                );
            }
            if a.dtype() != acc[0].dtype() {
                bail!(
                    "{}: array `{name}` is {}, in {} it is {}",
                    p.display(),
                    a.dtype(),
                    parts[0].display(),
                    acc[0].dtype()
                );
            }
            acc.push(a);
        }
    }
    let mut joined = Vec::new();
    let mut samples = 0;
    for (name, parts) in merged {
        let a = concatenate(&parts).with_context(|| format!("joining `{name}`"))?;
        samples = a.shape().first().copied().unwrap_or(0);
        joined.push((name, a));
    }
    write_outputs(out, &joined)?;
    Ok(samples)
}
