//! The conversion options every pass runs under: NengoDL's converter arguments and how max
//! pooling is lowered.

/// What `lower-maxpool` does with max pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MaxPoolMode {
    /// A circuit of neurons (exact in rate mode).
    #[default]
    Neural,
    /// Average pooling instead.
    Avg,
    /// The exact, non-neural op.
    Keep,
}

/// Conversion options: how to lower max pooling, and whether (and how) to spike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConvertOptions {
    /// Max-pool lowering.
    pub max_pool: MaxPoolMode,
    /// Spiking conversion; `None` keeps rate neurons.
    pub spiking: Option<SpikeOptions>,
}

/// Initial membrane voltage of spiking neurons.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitialVoltage {
    /// Uniform in [0, 1), seeded per population (Nengo's default).
    Uniform,
    /// One value for every neuron.
    Fixed(f64),
}

/// Options of `spikify` (NengoDL's converter arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct SpikeOptions {
    /// `scale_firing_rates` for every layer without its own.
    pub scale: f64,
    /// Per-layer scales, by layer (population) name.
    pub layer_scales: Vec<(String, f64)>,
    /// Lowpass synapse time constant on connections out of neurons, or none.
    pub synapse: Option<f64>,
    /// Per-layer synapses on connections out of that layer (`None`: no synapse), by layer
    /// (population) name; they win over `synapse`.
    pub layer_synapses: Vec<(String, Option<f64>)>,
    /// Initial voltages.
    pub initial_voltage: InitialVoltage,
    /// How max pooling will be lowered (decides where synapses go around pools).
    pub max_pool: MaxPoolMode,
    /// Spiking neurons for the ReLU family (`true`), or NengoDL's options on a rate network
    /// (`false`): the scales and synapses apply, and every neuron stays a rate neuron.
    pub spiking: bool,
    /// The neuron `relu` becomes (NengoDL's `swap_activations`).
    pub relu_neuron: Swap,
}

/// The spiking neuron a `relu` becomes (NengoDL's `swap_activations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Swap {
    /// Nengo's `SpikingRectifiedLinear` (the same function, in spikes): negative input currents
    /// are dropped, `v += max(J, 0)·dt`.
    #[default]
    SpikingRelu,
    /// Integrate-and-fire with signed input, reset by subtraction and no floor on the membrane
    /// (`if_neuron`, the neuron of the conversion literature): an inhibitory input cancels an
    /// excitatory one, so spike trains can be read without a synapse in between. Not a Nengo
    /// neuron.
    If,
    /// Nengo's `LIF`, default tau_rc 0.02, tau_ref 0.002 (changes the function, as NengoDL's swap
    /// does).
    Lif,
}

impl Default for SpikeOptions {
    fn default() -> Self {
        SpikeOptions {
            scale: 1.0,
            layer_scales: Vec::new(),
            synapse: Some(0.005),
            layer_synapses: Vec::new(),
            initial_voltage: InitialVoltage::Uniform,
            max_pool: MaxPoolMode::Neural,
            relu_neuron: Swap::SpikingRelu,
            spiking: true,
        }
    }
}

impl SpikeOptions {
    /// The scale of a population named `name` (a layer name, or the layer's value name).
    pub fn scale_for(&self, name: &str) -> f64 {
        for_layer(&self.layer_scales, name).unwrap_or(self.scale)
    }

    /// The synapse on connections out of the population named `name` (a layer name, or the
    /// layer's value name).
    pub fn synapse_for(&self, name: &str) -> Option<f64> {
        for_layer(&self.layer_synapses, name).unwrap_or(self.synapse)
    }
}

/// The per-layer setting for a population named `name`: given for its value name or for its
/// layer (the name up to the first `.`).
fn for_layer<T: Copy>(settings: &[(String, T)], name: &str) -> Option<T> {
    let layer = name.split('.').next().unwrap_or(name);
    settings
        .iter()
        .find(|(n, _)| n == name || n == layer)
        .map(|&(_, v)| v)
}
