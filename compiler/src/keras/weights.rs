//! Finding a layer's weights in the HDF5 store of a Keras file.
//!
//! - `.keras` archives (`model.weights.h5`): `/layers/<auto>/vars/<i>`, where `<auto>` is the
//!   snake-cased class name de-duplicated in `model.layers` order (not the layer name); nested
//!   models recurse through `/layers/<auto>/layers/...`. Keras 3 also records the layer name as
//!   `vars@name`, which is checked when present.
//! - legacy `.h5`: `/model_weights/<layer name>` lists its datasets in the `weight_names`
//!   attribute (possibly split into `weight_names0`, `weight_names1`, …; an empty float array
//!   means no weights).

use super::ModelError;
use super::hdf5::{Panicked, guard};
use hdf5_reader::Hdf5File;
use hdf5_reader::group::Group;
use ndarray::ArrayD;

/// The HDF5 store of a model's weights.
pub enum WeightStore {
    /// `model.weights.h5` of a `.keras` archive, laid out as the Keras that wrote it does.
    Archive(Hdf5File, ArchiveLayout),
    /// A legacy `.h5` model file.
    Legacy(Hdf5File),
}

/// How a `.keras` archive names its layers' weight groups, which depends on the Keras that wrote
/// it (Keras's `saving_lib`; the reading of each version is in the README's Keras section).
///
/// Saving walks the model depth first. A model's layers, in `model.layers` order (a Sequential
/// model's InputLayer is not among them), go into one child group of the model's group, each
/// named after its snake-cased class with a per-class counter: `dense`, `dense_1`, ... Every
/// nested model starts its own counters. Which child group, and how the counter runs:
///
/// - tf.keras 2.15 and Keras 3: `layers`, counting 0, 1, 2, …
/// - tf.keras 2.14: `_layer_checkpoint_dependencies`, counting 0, 1, 2, …
/// - tf.keras 2.12 and 2.13: `_layer_checkpoint_dependencies`, where a layer with weights is
///   listed twice in the dictionary the walk follows and its duplicate still takes a number:
///   `dense`, `dense_2`, … for layers with weights, one number for those without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLayout {
    /// The child group holding a model's layers.
    pub container: &'static str,
    /// A layer with weights takes two numbers of its class's counter.
    pub weighted_count_twice: bool,
}

impl ArchiveLayout {
    /// The layout of tf.keras 2.15 and Keras 3.
    pub const LAYERS: ArchiveLayout = ArchiveLayout {
        container: "layers",
        weighted_count_twice: false,
    };

    /// The layout of the Keras whose `keras_version` (from the archive's `metadata.json`) is
    /// `version`. Without a version, the container present in the file decides, read with
    /// 2.14's counter (2.12 and 2.13 write the same container but count differently, and only
    /// the version tells them apart).
    pub fn new(version: Option<&str>, has_layers_group: bool) -> Self {
        let parsed = version.and_then(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        });
        let checkpoint = |twice| ArchiveLayout {
            container: "_layer_checkpoint_dependencies",
            weighted_count_twice: twice,
        };
        match parsed {
            Some((2, minor)) if minor <= 13 => checkpoint(true),
            Some((2, 14)) => checkpoint(false),
            Some(_) => Self::LAYERS,
            None if has_layers_group => Self::LAYERS,
            None => checkpoint(false),
        }
    }
}

/// Where a layer sits: the chain of (layer name, archive auto name) from the top model down.
pub type LayerPath = [(String, String)];

fn werr(msg: impl Into<String>) -> ModelError {
    ModelError::Weights(msg.into())
}

/// Keras's `to_snake_case`: drop non-word characters, then `_` before capitalised words and
/// between a lower-case letter and an upper-case one, then lower-case.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // (.)([A-Z][a-z]+) → \1_\2
    let mut step1 = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0
            && c.is_ascii_uppercase()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())
        {
            step1.push('_');
        }
        step1.push(c);
    }
    // ([a-z])([A-Z]) → \1_\2
    let s: Vec<char> = step1.chars().collect();
    let mut out = String::new();
    for (i, &c) in s.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() && s[i - 1].is_ascii_lowercase() {
            out.push('_');
        }
        out.push(c);
    }
    out.to_lowercase()
}

/// An HDF5 access through [`guard`]; a panic is an error naming `what`.
fn h5<T>(what: &str, access: impl FnOnce() -> T) -> Result<T, ModelError> {
    guard(access)
        .map_err(|Panicked| werr(format!("{what}: the HDF5 reader failed on malformed data")))
}

/// The most elements one weight tensor may declare: 2^28 (1 GiB of float32; VGG-16's largest
/// kernel has 2^26.6). A corrupt or hostile file declaring more is refused before anything is
/// allocated, with the size it declared.
const MAX_WEIGHT_ELEMENTS: u64 = 1 << 28;

fn read_f32(ds: &hdf5_reader::Dataset, what: &str) -> Result<ArrayD<f32>, ModelError> {
    let shape = h5(what, || ds.shape().to_vec())?;
    let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if elements.is_none_or(|n| n > MAX_WEIGHT_ELEMENTS) {
        let count = elements.map_or("more than 2^64".to_string(), |n| n.to_string());
        return Err(werr(format!(
            "{what}: declares shape {shape:?} ({count} elements), more than the {MAX_WEIGHT_ELEMENTS} a weight tensor may have; the file may be corrupt"
        )));
    }
    let attempt = guard(|| {
        ds.read_array::<f32>()
            .or_else(|_| ds.read_array::<f64>().map(|a| a.mapv(|x| x as f32)))
    });
    match attempt {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(werr(format!("{what}: cannot read as floats ({e})"))),
        Err(_) => Err(werr(format!(
            "{what}: the HDF5 reader failed on malformed data"
        ))),
    }
}

/// A list-of-strings attribute, following Keras's chunking and its empty-list marker.
fn name_list(g: &Group, base: &str) -> Result<Option<Vec<String>>, ModelError> {
    if let Ok(a) = h5(base, || g.attribute(base))? {
        if let Ok(v) = h5(base, || a.read_strings())? {
            return Ok(Some(v));
        }
        if h5(base, || a.read_1d::<f64>())?.is_ok_and(|v| v.is_empty()) {
            return Ok(Some(Vec::new()));
        }
        return Err(werr(format!(
            "attribute `{base}` is neither strings nor an empty list"
        )));
    }
    let mut out = Vec::new();
    let mut k = 0;
    while let Ok(a) = h5(base, || g.attribute(&format!("{base}{k}")))? {
        out.extend(
            h5(base, || a.read_strings())?
                .map_err(|e| werr(format!("attribute `{base}{k}`: {e}")))?,
        );
        k += 1;
    }
    Ok((k > 0).then_some(out))
}

/// Whether weight name `weight` (`outer/layer/kernel:0`) lies under layer `layer`, whose own
/// name may hold `/`: the layer's path components appear in order, one after another.
fn names_layer(weight: &str, layer: &str) -> bool {
    let w: Vec<&str> = weight.split('/').collect();
    let l: Vec<&str> = layer.split('/').collect();
    w.windows(l.len()).any(|win| win == l.as_slice())
}

/// The group at a `/`-separated path below `g`, if there is one.
fn group_at(g: &Group, path: &str) -> Result<Option<Group>, ModelError> {
    let mut cur = g.clone();
    for d in path.split('/').filter(|p| !p.is_empty()) {
        match h5(path, || cur.group(d))? {
            Ok(next) => cur = next,
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// The dataset at a `/`-separated path below `g`.
fn dataset_at(g: &Group, path: &str) -> Result<Option<hdf5_reader::Dataset>, ModelError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(None);
    };
    let Some(cur) = group_at(g, &dirs.join("/"))? else {
        return Ok(None);
    };
    Ok(h5(path, || cur.dataset(last))?.ok())
}

impl WeightStore {
    /// The archive layout, for a `.keras` archive.
    pub fn layout(&self) -> Option<ArchiveLayout> {
        match self {
            WeightStore::Archive(_, layout) => Some(*layout),
            WeightStore::Legacy(_) => None,
        }
    }

    /// The weights of the layer at `path`, in Keras's variable order (kernel before bias, …).
    /// `inner` is where a wrapper layer keeps them in a `.keras` archive, below the layer's own
    /// group: `layer` for `TimeDistributed`, `layer/cell` for keras-spiking's RNN layers (a
    /// legacy `.h5` lists them all under the layer).
    pub fn layer(&self, path: &LayerPath, inner: &str) -> Result<Vec<ArrayD<f32>>, ModelError> {
        let (layer_name, _) = path.last().expect("a layer path is never empty");
        let lerr = |what: String| ModelError::Weights(format!("layer `{layer_name}`: {what}"));
        match self {
            WeightStore::Archive(file, layout) => {
                let mut group = String::from("/");
                for (_, auto) in path {
                    group.push_str(&format!("{}/{auto}/", layout.container));
                }
                if !inner.is_empty() {
                    group.push_str(&format!("{inner}/"));
                }
                let vars_path = format!("{group}vars");
                let Ok(vars) = h5(&vars_path, || file.group(&vars_path))? else {
                    return Err(lerr(format!(
                        "no group `{vars_path}` in model.weights.h5 (the weights file is damaged or belongs to another model)"
                    )));
                };
                // (A wrapped layer records its own name, not the wrapper's.)
                if inner.is_empty()
                    && let Ok(recorded) = h5(&vars_path, || {
                        vars.attribute("name").and_then(|a| a.read_string())
                    })?
                    && recorded != *layer_name
                {
                    return Err(lerr(format!(
                        "`{vars_path}` belongs to layer `{recorded}`; the weights file does not match the config"
                    )));
                }
                let mut out = Vec::new();
                while let Ok(ds) = h5(&vars_path, || vars.dataset(&out.len().to_string()))? {
                    out.push(read_f32(&ds, &format!("{vars_path}/{}", out.len()))?);
                }
                Ok(out)
            }
            WeightStore::Legacy(file) => {
                let top = h5("/model_weights", || {
                    file.group("/model_weights").or_else(|_| file.root_group())
                })?
                .map_err(|e| werr(e.to_string()))?;
                let (top_name, _) = &path[0];
                // HDF5 stores a layer name with `/` in it (`conv1/conv`, as every
                // keras.applications model has) as nested groups.
                let Some(g) = group_at(&top, top_name)? else {
                    return Err(lerr(format!("no group `/model_weights/{top_name}`")));
                };
                let names = name_list(&g, "weight_names")?.ok_or_else(|| {
                    lerr(format!("`/model_weights/{top_name}` has no `weight_names`"))
                })?;
                // A layer inside a nested model: its weights are those whose path names it.
                let selected: Vec<&String> = if path.len() == 1 {
                    names.iter().collect()
                } else {
                    names
                        .iter()
                        .filter(|n| names_layer(n, layer_name))
                        .collect()
                };
                let mut out = Vec::new();
                for n in selected {
                    let ds = dataset_at(&g, n)?.ok_or_else(|| {
                        lerr(format!("dataset `{n}` listed in weight_names is missing"))
                    })?;
                    out.push(read_f32(&ds, n)?);
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn archive_layouts_follow_the_writing_keras() {
        use super::ArchiveLayout;
        let cp = |twice| ArchiveLayout {
            container: "_layer_checkpoint_dependencies",
            weighted_count_twice: twice,
        };
        assert_eq!(ArchiveLayout::new(Some("2.12.0"), false), cp(true));
        assert_eq!(ArchiveLayout::new(Some("2.13.1"), false), cp(true));
        assert_eq!(ArchiveLayout::new(Some("2.14.0"), false), cp(false));
        assert_eq!(
            ArchiveLayout::new(Some("2.15.0"), true),
            ArchiveLayout::LAYERS
        );
        assert_eq!(
            ArchiveLayout::new(Some("3.15.1"), true),
            ArchiveLayout::LAYERS
        );
        assert_eq!(ArchiveLayout::new(None, true), ArchiveLayout::LAYERS);
        assert_eq!(ArchiveLayout::new(None, false), cp(false));
        assert_eq!(
            ArchiveLayout::new(Some("garbage"), true),
            ArchiveLayout::LAYERS
        );
    }

    #[test]
    fn weight_names_under_slashed_layer_names() {
        use super::names_layer;
        assert!(names_layer("seq/dense/kernel:0", "dense"));
        assert!(names_layer("m/conv1/conv/kernel:0", "conv1/conv"));
        assert!(!names_layer("m/conv1/bn/gamma:0", "conv1/conv"));
        assert!(!names_layer("m/dense_1/kernel:0", "dense"));
    }

    #[test]
    fn snake_case_matches_keras() {
        for (class, want) in [
            ("Conv2D", "conv2d"),
            ("MaxPooling2D", "max_pooling2d"),
            ("InputLayer", "input_layer"),
            ("BatchNormalization", "batch_normalization"),
            ("GlobalAveragePooling1D", "global_average_pooling1d"),
            ("ZeroPadding3D", "zero_padding3d"),
            ("UpSampling2D", "up_sampling2d"),
            ("ReLU", "re_lu"),
            ("LeakyReLU", "leaky_re_lu"),
            ("Dense", "dense"),
            ("LSTM", "lstm"),
        ] {
            assert_eq!(snake_case(class), want, "{class}");
        }
    }
}
