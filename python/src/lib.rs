//! `snnc._snnc`: the Python bindings. Thin: every step is a call into the library crates
//! (`snnc_compiler::driver` to read and convert, `snnc_runtime::dataset` to simulate); the
//! Python package around it (`python/python/snnc`) shapes arguments and results.

use numpy::{PyArray1, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use snnc_compiler::calibrate::Simulated;
use snnc_compiler::driver::{
    self, CompileError, CompileHooks, Flags, Normalize, NormalizeRuleFlag, Swap, TimedNormalize,
};
use snnc_compiler::passes::{InitialVoltage, MaxPoolMode};
use snnc_ir::{Module, Verified};
use snnc_runtime::dataset::{self, DatasetError, RunSpec};
use snnc_runtime::observe::reported_outputs;
use snnc_runtime::{Backend, Simulator as RustSimulator};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

create_exception!(
    _snnc,
    SnncError,
    PyException,
    "Base class of every snnc error."
);
create_exception!(
    _snnc,
    ConversionError,
    SnncError,
    "A model could not be read or converted (the message names the file, layer or line)."
);
create_exception!(
    _snnc,
    VerifyError,
    ConversionError,
    "A module does not verify (the message lists every error, with its line)."
);
create_exception!(
    _snnc,
    SimulationError,
    SnncError,
    "A simulation could not be set up or run."
);
create_exception!(
    _snnc,
    InputError,
    SimulationError,
    "Inputs or labels that do not fit the network."
);

fn conversion_error(e: CompileError) -> PyErr {
    match e {
        CompileError::Verify { .. } => VerifyError::new_err(e.to_string()),
        CompileError::Flag(m) => PyValueError::new_err(m),
        e => ConversionError::new_err(e.to_string()),
    }
}

fn simulation_error(e: DatasetError) -> PyErr {
    match e {
        DatasetError::Sim(_) | DatasetError::Interrupted | DatasetError::TooLarge { .. } => {
            SimulationError::new_err(e.to_string())
        }
        e => InputError::new_err(e.to_string()),
    }
}

/// A converted, verified network.
#[pyclass(frozen, module = "snnc._snnc")]
struct Network {
    module: Arc<Verified>,
    warnings: Vec<String>,
    calibration: Option<String>,
}

fn shapes<'py>(
    py: Python<'py>,
    items: impl Iterator<Item = (String, Vec<usize>)>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, shape) in items {
        d.set_item(name, pyo3::types::PyTuple::new(py, shape)?)?;
    }
    Ok(d)
}

impl Network {
    fn of(module: Arc<Verified>) -> Network {
        Network {
            module,
            warnings: Vec::new(),
            calibration: None,
        }
    }
}

#[pymethods]
impl Network {
    /// `{input name: shape}` (per sample, without the batch axis).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.module;
        shapes(
            py,
            m.inputs
                .iter()
                .map(|&v| (m.value(v).name.clone(), m.value(v).ty.shape.clone())),
        )
    }

    /// `{output name: shape}` of the outputs a simulation reports (spike counts aside).
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.module;
        shapes(
            py,
            reported_outputs(m).into_iter().map(|k| {
                let ty = m.operand_type(m.outputs[k].value).expect("verified");
                (m.outputs[k].name.clone(), ty.shape.clone())
            }),
        )
    }

    /// The spiking populations whose spikes are counted, in order.
    #[getter]
    fn populations(&self) -> Vec<String> {
        self.module
            .outputs
            .iter()
            .filter_map(|o| match &o.kind {
                snnc_ir::OutputKind::Spikes { population, .. } => Some(population.clone()),
                _ => None,
            })
            .collect()
    }

    /// The module in canonical text (large constants as type and checksum).
    #[getter]
    fn ir(&self) -> String {
        self.module.to_string()
    }

    /// Timestep in seconds.
    #[getter]
    fn dt(&self) -> f64 {
        self.module.dt
    }

    /// The conversion's warnings.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// What `normalize_rates` measured and chose, or None.
    #[getter]
    fn calibration(&self) -> Option<String> {
        self.calibration.clone()
    }

    /// The `.snn` artifact as bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut buf = std::io::Cursor::new(Vec::new());
        snnc_ir::write_snn(&self.module, &mut buf)
            .map_err(|e| ConversionError::new_err(format!("writing the .snn artifact: {e}")))?;
        Ok(PyBytes::new(py, buf.get_ref()))
    }

    /// Write the `.snn` artifact (through a temporary file renamed into place).
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        let tmp = path.with_extension("snn.partial");
        snnc_ir::save_snn(&self.module, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(Into::into))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                ConversionError::new_err(format!("writing {}: {e}", path.display()))
            })
    }

    /// Write the network as a NIR graph (see `snnc.export_nir`, which converts without
    /// `lower-maxpool` first so max pooling exports as NIR's circuit). Returns the warnings.
    #[pyo3(signature = (path, fold_gains=false))]
    fn to_nir(&self, path: std::path::PathBuf, fold_gains: bool) -> PyResult<Vec<String>> {
        let mut exported = snnc_nir::export::export(&self.module)
            .map_err(|e| ConversionError::new_err(e.to_string()))?;
        if fold_gains {
            let left = snnc_nir::export::fold_gains(&mut exported.graph);
            exported.warnings.extend(left);
        }
        snnc_nir::file::write(&path, &exported.graph)
            .map_err(|e| ConversionError::new_err(e.to_string()))?;
        Ok(exported.warnings)
    }

    /// A network from `.snn` bytes (what `to_bytes` gives).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Network> {
        let m = snnc_ir::read_snn(std::io::Cursor::new(data))
            .map_err(|e| ConversionError::new_err(format!("not a .snn artifact: {e}")))?;
        verified(m, "the .snn bytes").map(|v| Network::of(Arc::new(v)))
    }

    fn __repr__(&self) -> String {
        let m = &self.module;
        format!(
            "<snnc.Network: {} instructions, {} inputs, {} outputs, {} spiking populations>",
            m.insts.len(),
            m.inputs.len(),
            reported_outputs(m).len(),
            self.populations().len()
        )
    }
}

fn verified(m: Module, what: &str) -> PyResult<Verified> {
    snnc_ir::verify(m, snnc_ir::Target::Any)
        .map_err(|e| VerifyError::new_err(format!("{what} does not verify:\n{e}")))
}

/// Read and convert a model file (`.keras`, `.h5`, `.sir`, `.snn`, `.json`). Arguments have
/// the meaning of `snnc.convert`'s; `None` is the default.
#[pyfunction]
#[pyo3(signature = (path, *, spiking=false, swap=None, scale=None, layer_scales=Vec::new(),
    synapse=None, no_synapse=false, layer_synapses=Vec::new(), initial_voltage=None, max_pool=None, dt=None, passes=None,
    calibration=None, normalize_rule="budget", percentile=99.0, max_rate=1000.0,
    error_fraction=0.3, target_steps=None, target_agreement=0.99))]
#[allow(clippy::too_many_arguments)]
fn compile(
    py: Python<'_>,
    path: std::path::PathBuf,
    spiking: bool,
    swap: Option<&str>,
    scale: Option<f64>,
    layer_scales: Vec<(String, f64)>,
    synapse: Option<f64>,
    no_synapse: bool,
    layer_synapses: Vec<(String, Option<f64>)>,
    initial_voltage: Option<Bound<'_, PyAny>>,
    max_pool: Option<&str>,
    dt: Option<f64>,
    passes: Option<Vec<String>>,
    calibration: Option<PyReadonlyArrayDyn<'_, f32>>,
    normalize_rule: &str,
    percentile: f64,
    max_rate: f64,
    error_fraction: f64,
    target_steps: Option<usize>,
    target_agreement: f64,
) -> PyResult<Network> {
    let swap = match swap {
        None => None,
        Some("spiking_relu" | "relu=spiking_relu") => Some(Swap::SpikingRelu),
        Some("lif" | "relu=lif") => Some(Swap::Lif),
        Some("if" | "if_neuron" | "relu=if") => Some(Swap::If),
        Some(o) => {
            return Err(PyValueError::new_err(format!(
                "swap_activations: relu can become `spiking_relu`, `if` or `lif`, not `{o}`"
            )));
        }
    };
    let initial_voltage = match initial_voltage {
        None => None,
        Some(v) => match v.extract::<String>() {
            Ok(s) if s == "uniform" => Some(InitialVoltage::Uniform),
            Ok(s) => {
                return Err(PyValueError::new_err(format!(
                    "initial_voltage must be \"uniform\" or a number, not {s:?}"
                )));
            }
            Err(_) => Some(InitialVoltage::Fixed(v.extract::<f64>().map_err(|_| {
                PyValueError::new_err("initial_voltage must be \"uniform\" or a number")
            })?)),
        },
    };
    let max_pool = match max_pool {
        None => None,
        Some("neural") => Some(MaxPoolMode::Neural),
        Some("avg") => Some(MaxPoolMode::Avg),
        Some("keep") => Some(MaxPoolMode::Keep),
        Some(o) => {
            return Err(PyValueError::new_err(format!(
                "max_pool must be \"neural\", \"avg\" or \"keep\", not {o:?}"
            )));
        }
    };
    let rule = match normalize_rule {
        "budget" => NormalizeRuleFlag::Budget { error_fraction },
        "percentile" => NormalizeRuleFlag::Percentile { max_rate },
        o => {
            return Err(PyValueError::new_err(format!(
                "normalize_rule must be \"budget\" or \"percentile\", not {o:?}"
            )));
        }
    };
    let data = calibration.as_ref().map(|c| c.as_array());
    let flags = Flags {
        spiking,
        swap,
        scale,
        layer_scales,
        synapse: if no_synapse {
            Some(None)
        } else {
            synapse.map(Some)
        },
        layer_synapses,
        initial_voltage,
        max_pool,
        dt,
        passes,
        normalize: data.as_ref().map(|d| Normalize {
            samples: d.shape().first().copied().unwrap_or(0),
            percentile,
            rule,
            target: target_steps.map(|steps| TimedNormalize {
                steps,
                agreement: target_agreement,
            }),
        }),
        verify_last_only: false,
    };
    let (module, report) = py
        .detach(|| {
            let mut simulate = |m: &Module, steps: usize| match &data {
                Some(d) => dataset::run_calibration(m, d.view(), steps)
                    .map(|(outputs, spikes)| Simulated { outputs, spikes }),
                None => Err("no calibration data".to_string()),
            };
            let hooks = CompileHooks {
                simulate: Some(&mut simulate),
                ..CompileHooks::default()
            };
            driver::compile(&path, &flags, hooks)
        })
        .map_err(conversion_error)?;
    Ok(Network {
        module: Arc::new(module),
        warnings: report.warnings,
        calibration: report.calibration.map(|c| c.to_string()),
    })
}

/// Supported Keras layer classes.
#[pyfunction]
fn supported_layers() -> Vec<&'static str> {
    snnc_compiler::keras::supported_layers()
}

/// A compiled simulator of one network for minibatches of a fixed size.
#[pyclass(frozen, module = "snnc._snnc")]
struct Simulator {
    sim: Mutex<RustSimulator>,
    network: Arc<Verified>,
    batch: usize,
    backend: Backend,
    /// Worker threads for a run without probes (1: this simulator; else fresh simulators, one
    /// per thread, and 0 for one per core).
    threads: usize,
    /// The last set of probes asked for, with the simulator of the network probed that way and
    /// its spike probes (rebuilt when another set is asked for).
    probed: Mutex<Option<Probed>>,
}

/// A simulator of the network with probes added.
struct Probed {
    probes: Vec<String>,
    sim: RustSimulator,
    spike_probes: Vec<(String, usize)>,
}

impl Probed {
    fn new(
        network: &Verified,
        probes: Vec<String>,
        backend: Backend,
        batch: usize,
    ) -> PyResult<Self> {
        let (m, resolved) = snnc_compiler::probe::add_probes(network.clone().into_inner(), &probes)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let m = verified(m, "the probed network")?;
        let spike_probes = snnc_compiler::probe::spike_probes(&resolved);
        let sim = RustSimulator::new(&m, backend, batch)
            .map_err(|e| SimulationError::new_err(e.to_string()))?;
        Ok(Probed {
            probes,
            sim,
            spike_probes,
        })
    }
}

#[pymethods]
impl Simulator {
    #[new]
    #[pyo3(signature = (network, batch, backend="jit", threads=1))]
    fn new(
        py: Python<'_>,
        network: &Network,
        batch: usize,
        backend: &str,
        threads: usize,
    ) -> PyResult<Self> {
        let backend = match backend {
            "jit" => Backend::Jit,
            "interp" => Backend::Interp,
            o => {
                return Err(PyValueError::new_err(format!(
                    "backend must be \"jit\" or \"interp\", not {o:?}"
                )));
            }
        };
        if batch == 0 {
            return Err(PyValueError::new_err("minibatch_size must be at least 1"));
        }
        let module = network.module.clone();
        let sim = py
            .detach(|| RustSimulator::new(&module, backend, batch))
            .map_err(|e| SimulationError::new_err(e.to_string()))?;
        Ok(Simulator {
            sim: Mutex::new(sim),
            network: module,
            batch,
            backend,
            threads,
            probed: Mutex::new(None),
        })
    }

    /// Minibatch size.
    #[getter]
    fn batch(&self) -> usize {
        self.batch
    }

    /// Run every sample of `inputs` (float32 arrays in module input order). Releases the GIL;
    /// every 50 ms it takes it back briefly to check for Ctrl-C and, when a minibatch has
    /// finished, to call `progress(samples_done, samples)`. `probes` (see
    /// `snnc_compiler::probe`) are recorded at every step into the outputs, spike probes as
    /// int32 counts.
    #[pyo3(signature = (inputs, labels=None, steps=None, seed=0, all_steps=true,
        accuracy_at=Vec::new(), progress=None, probes=Vec::new(), readout="last"))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<PyReadonlyArrayDyn<'py, f32>>,
        labels: Option<Vec<i64>>,
        steps: Option<usize>,
        seed: u64,
        all_steps: bool,
        accuracy_at: Vec<usize>,
        progress: Option<Py<PyAny>>,
        probes: Vec<String>,
        readout: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let readout: snnc_runtime::dataset::Readout =
            readout.parse().map_err(PyValueError::new_err)?;
        let views: Vec<_> = inputs.iter().map(|a| a.as_array()).collect();
        // Taken out of its lock while it runs (the GIL is released then); put back after.
        let mut probed = self.probed.lock().unwrap_or_else(|p| p.into_inner()).take();
        if !probes.is_empty() && probed.as_ref().is_none_or(|p| p.probes != probes) {
            let (network, backend, batch) = (self.network.clone(), self.backend, self.batch);
            probed = Some(py.detach(|| Probed::new(&network, probes.clone(), backend, batch))?);
        }
        let spec = RunSpec {
            steps,
            batch: self.batch,
            backend: Backend::Jit,
            seed,
            all_steps,
            accuracy_at,
            spike_probes: match (&probed, probes.is_empty()) {
                (Some(p), false) => p.spike_probes.clone(),
                _ => Vec::new(),
            },
            readout,
            ..RunSpec::default()
        };
        let mut raised: Option<PyErr> = None;
        let result = py.detach(|| {
            let mut main = self.sim.lock().unwrap_or_else(|p| p.into_inner());
            let sim = match (probed.as_mut(), probes.is_empty()) {
                (Some(p), false) => &mut p.sim,
                _ => &mut *main,
            };
            let mut last_check = Instant::now();
            let mut report = |p: &dataset::Progress| {
                let end_of_batch = p.step == p.steps;
                if !end_of_batch && last_check.elapsed() < Duration::from_millis(50) {
                    return ControlFlow::Continue(());
                }
                last_check = Instant::now();
                Python::attach(|py| {
                    let r = py
                        .check_signals()
                        .and_then(|()| match (&progress, end_of_batch) {
                            (Some(cb), true) => cb.call1(py, (p.samples_done, p.samples)).map(drop),
                            _ => Ok(()),
                        });
                    match r {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => {
                            raised = Some(e);
                            ControlFlow::Break(())
                        }
                    }
                })
            };
            if self.threads != 1 && probes.is_empty() {
                // Fresh simulators, one per thread (each compiles its own code); the results
                // do not depend on the thread count.
                let spec = RunSpec {
                    threads: self.threads,
                    backend: self.backend,
                    ..spec.clone()
                };
                dataset::run(&self.network, &views, labels.as_deref(), &spec, &mut report)
            } else {
                dataset::run_with(sim, &views, labels.as_deref(), &spec, &mut report)
            }
        });
        *self.probed.lock().unwrap_or_else(|p| p.into_inner()) = probed;
        let r = match result {
            Ok(r) => r,
            Err(DatasetError::Interrupted) if raised.is_some() => {
                return Err(raised.expect("checked"));
            }
            Err(e) => return Err(simulation_error(e)),
        };
        let out = PyDict::new(py);
        let outputs = PyDict::new(py);
        for (name, a) in r.outputs {
            outputs.set_item(name, PyArrayDyn::from_owned_array(py, a))?;
        }
        for (name, a) in r.spike_probes {
            outputs.set_item(name, PyArrayDyn::from_owned_array(py, a))?;
        }
        out.set_item("outputs", outputs)?;
        let spikes = PyDict::new(py);
        for (pop, counts) in r.spikes {
            spikes.set_item(pop, PyArray1::from_vec(py, counts))?;
        }
        out.set_item("spikes", spikes)?;
        out.set_item("correct", r.correct)?;
        out.set_item("correct_at", r.correct_at)?;
        out.set_item("samples", r.samples)?;
        out.set_item("steps", r.steps)?;
        out.set_item("seconds", r.elapsed.as_secs_f64())?;
        Ok(out)
    }

    /// The network simulated.
    #[getter]
    fn network(&self) -> Network {
        Network::of(self.network.clone())
    }
}

#[pymodule]
fn _snnc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Network>()?;
    m.add_class::<Simulator>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(supported_layers, m)?)?;
    m.add("SnncError", py.get_type::<SnncError>())?;
    m.add("ConversionError", py.get_type::<ConversionError>())?;
    m.add("VerifyError", py.get_type::<VerifyError>())?;
    m.add("SimulationError", py.get_type::<SimulationError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "DEFAULT_PASSES",
        snnc_compiler::passes::DEFAULT_PIPELINE.to_vec(),
    )?;
    Ok(())
}
