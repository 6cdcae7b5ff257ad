//! Lane emitters: one neuron, synapse or LIF update on lanes of f32 or f32x4, mirroring
//! [`snnc_ir::semantics`] operation for operation so the JIT and the interpreter agree bit for bit.

use super::abi::Hosts;
use super::emit::{fconst, flags, relu, select};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use cranelift_frontend::FunctionBuilder;
use snnc_ir::semantics::{AlphaCoefficients, LifParams};
use snnc_ir::{NeuronModel, Op};

/// One neuron update on lanes of type `ty`, in the f32 operation order of `semantics`: the output
/// and, for spiking models, the new voltage.
#[allow(clippy::too_many_arguments)]
pub(super) fn neuron_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    (n, hosts): (&snnc_ir::Neuron, &Hosts),
    dt: f32,
    j: Value,
    v_in: Option<Value>,
) -> (Value, Option<Value>) {
    let (g, a) = (n.gain as f32, n.amplitude as f32);
    // Transcendental models call their function in `semantics` for each lane.
    if let Some((code, p0, p1)) = snnc_ir::semantics::activation_code(&n.model) {
        let call = |b: &mut FunctionBuilder, x: Value| {
            let args = [
                b.ins().iconst(types::I32, code as i64),
                x,
                b.ins().f32const(g),
                b.ins().f32const(a),
                b.ins().f32const(p0),
                b.ins().f32const(p1),
            ];
            let c = b.ins().call(hosts.activation, &args);
            b.inst_results(c)[0]
        };
        return (per_lane(b, ty, j, call), None);
    }
    let host = match n.model {
        NeuronModel::Sigmoid => Some((hosts.sigmoid, vec![])),
        NeuronModel::Tanh => Some((hosts.tanh, vec![])),
        NeuronModel::LifRate { tau_rc, tau_ref } => {
            Some((hosts.lif_rate, vec![tau_rc as f32, tau_ref as f32]))
        }
        _ => None,
    };
    if let Some((f, extra)) = host {
        let call = |b: &mut FunctionBuilder, x: Value| {
            let mut args = vec![x, b.ins().f32const(g), b.ins().f32const(a)];
            for &e in &extra {
                args.push(b.ins().f32const(e));
            }
            let c = b.ins().call(f, &args);
            b.inst_results(c)[0]
        };
        return (per_lane(b, ty, j, call), None);
    }
    let gv = fconst(b, ty, g);
    let x = b.ins().fmul(gv, j);
    let zero = fconst(b, ty, 0.0);
    match n.model {
        NeuronModel::Relu | NeuronModel::LeakyRelu { .. } => {
            let r = match n.model {
                NeuronModel::LeakyRelu { negative_slope } => {
                    let s = fconst(b, ty, negative_slope as f32);
                    let sx = b.ins().fmul(s, x);
                    select(b, ty, FloatCC::LessThan, (x, zero), sx, x)
                }
                _ => relu(b, ty, x),
            };
            let av = fconst(b, ty, a);
            (b.ins().fmul(av, r), None)
        }
        NeuronModel::LeakyIf { decay } => {
            let v_in = v_in.expect("spiking neurons read a voltage");
            let d = fconst(b, ty, decay as f32);
            let kept = b.ins().fmul(d, v_in);
            let dtv = fconst(b, ty, dt);
            let step = b.ins().fmul(x, dtv);
            let v = b.ins().fadd(kept, step);
            let one = fconst(b, ty, 1.0);
            let h = fconst(b, ty, a / dt);
            let y = select(b, ty, FloatCC::GreaterThan, (v, one), h, zero);
            let v1 = select(b, ty, FloatCC::GreaterThan, (v, one), zero, v);
            (y, Some(v1))
        }
        _ => {
            let drive = match n.model {
                NeuronModel::SpikingRelu => relu(b, ty, x),
                NeuronModel::SpikingLeakyRelu { negative_slope } => {
                    let s = fconst(b, ty, negative_slope as f32);
                    let sx = b.ins().fmul(s, x);
                    select(b, ty, FloatCC::GreaterThan, (x, zero), x, sx)
                }
                _ => x,
            };
            let dtv = fconst(b, ty, dt);
            let step = b.ins().fmul(drive, dtv);
            let v = b
                .ins()
                .fadd(v_in.expect("spiking neurons read a voltage"), step);
            let spikes = match n.model {
                NeuronModel::SpikingRelu => b.ins().floor(v),
                NeuronModel::SpikingLeakyRelu { .. } => b.ins().trunc(v),
                _ => {
                    let f = b.ins().floor(v);
                    relu(b, ty, f)
                }
            };
            let h = fconst(b, ty, a / dt);
            let y = b.ins().fmul(h, spikes);
            (y, Some(b.ins().fsub(v, spikes)))
        }
    }
}

/// A lowpass synapse on lanes of type `ty`, in the f32 operation order of `semantics`: the new
/// filtered value from input `x` and previous value `s`.
pub(super) fn lowpass_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    dt: f64,
    tau: f64,
    x: Value,
    s: Value,
) -> Value {
    let decay = snnc_ir::semantics::lowpass_decay(dt, tau);
    let d = fconst(b, ty, decay);
    let a = b.ins().fmul(d, s);
    let one_minus = fconst(b, ty, 1.0 - decay);
    let c = b.ins().fmul(one_minus, x);
    b.ins().fadd(a, c)
}

/// An alpha synapse on lanes of type `ty`, in the f32 operation order of `semantics`: the new
/// output `y'` and state `z'` from input `u` and the previous `y`, `z`.
pub(super) fn alpha_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    c: &AlphaCoefficients,
    (u, y, z): (Value, Value, Value),
) -> (Value, Value) {
    let affine = |b: &mut FunctionBuilder, (wz, wy, wu): (f32, f32, f32)| {
        let (wz, wy, wu) = (fconst(b, ty, wz), fconst(b, ty, wy), fconst(b, ty, wu));
        let tz = b.ins().fmul(wz, z);
        let ty_ = b.ins().fmul(wy, y);
        let s = b.ins().fadd(tz, ty_);
        let tu = b.ins().fmul(wu, u);
        b.ins().fadd(s, tu)
    };
    let y1 = affine(b, (c.yz, c.yy, c.yu));
    let z1 = affine(b, (c.zz, c.zy, c.zu));
    (y1, z1)
}

/// `f` applied to every lane of `x` (a host call per lane).
fn per_lane(
    b: &mut FunctionBuilder,
    ty: Type,
    x: Value,
    f: impl Fn(&mut FunctionBuilder, Value) -> Value,
) -> Value {
    if !ty.is_vector() {
        return f(b, x);
    }
    let mut out = None;
    for l in 0..ty.lane_count() as u8 {
        let xl = b.ins().extractlane(x, l);
        let y = f(b, xl);
        out = Some(match out {
            None => b.ins().scalar_to_vector(ty, y),
            Some(v) => b.ins().insertlane(v, y, l),
        });
    }
    out.expect("at least one lane")
}

/// Nengo's LIF on lanes of type `ty`: each lane calls [`snnc_ir::semantics::lif_step_c`], which
/// writes its three results to `slot`, read back at once. `params` and `slot` live in the
/// engine's tables.
pub(super) fn lif_lanes(
    b: &mut FunctionBuilder,
    ty: Type,
    hosts: &Hosts,
    (params, slot): (*const LifParams, *mut f32),
    (j, v, r): (Value, Value, Value),
) -> [Value; 3] {
    let p = b.ins().iconst(types::I64, params as i64);
    let out = b.ins().iconst(types::I64, slot as i64);
    let one = |b: &mut FunctionBuilder, j: Value, v: Value, r: Value| -> [Value; 3] {
        b.ins().call(hosts.lif, &[p, j, v, r, out]);
        [0, 1, 2].map(|k| b.ins().load(types::F32, flags(), out, 4 * k))
    };
    if !ty.is_vector() {
        return one(b, j, v, r);
    }
    let mut acc: Option<[Value; 3]> = None;
    for l in 0..ty.lane_count() as u8 {
        let (jl, vl, rl) = (
            b.ins().extractlane(j, l),
            b.ins().extractlane(v, l),
            b.ins().extractlane(r, l),
        );
        let res = one(b, jl, vl, rl);
        acc = Some(match acc {
            None => res.map(|x| b.ins().scalar_to_vector(ty, x)),
            Some(a) => [0, 1, 2].map(|k| b.ins().insertlane(a[k], res[k], l)),
        });
    }
    acc.expect("at least one lane")
}

/// Where the LIF update of one instruction finds its parameters and writes its results.
pub(super) type LifSlot = (*const LifParams, *mut f32);

/// The results of one neuron or synapse group on lanes of type `ty`, from its operands' lanes
/// `args` (current or input first, then states): output first, then new states.
pub(super) fn update(
    b: &mut FunctionBuilder,
    ty: Type,
    (op, dt): (&Op, f64),
    hosts: &Hosts,
    lif: Option<LifSlot>,
    args: &[Value],
) -> Vec<Value> {
    match op {
        Op::Neuron(n) if matches!(n.model, NeuronModel::Lif { .. }) => {
            let slot = lif.expect("a slot for every LIF instruction");
            lif_lanes(b, ty, hosts, slot, (args[0], args[1], args[2])).to_vec()
        }
        Op::Neuron(n) => {
            let (y, v1) = neuron_lanes(b, ty, (n, hosts), dt as f32, args[0], args.get(1).copied());
            std::iter::once(y).chain(v1).collect()
        }
        Op::Lowpass { tau } => vec![lowpass_lanes(b, ty, dt, *tau, args[0], args[1])],
        Op::Alpha { tau } => {
            let c = AlphaCoefficients::new(dt, *tau);
            let (y, z) = alpha_lanes(b, ty, &c, (args[0], args[1], args[2]));
            vec![y, z]
        }
        _ => unreachable!("only neurons and synapses update state"),
    }
}
