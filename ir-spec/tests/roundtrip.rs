//! Property tests: print∘parse∘print is the identity and JSON round-trips on generated modules;
//! the parser and the verifier never panic on random or mutated text.

use proptest::prelude::*;
use snnc_ir::{
    Builder, ConvAttrs, Module, Neuron, NeuronModel, Op, Operand, Padding, PoolAttrs, StateInit,
    Target, ValueId, check, parse,
};

/// One step of a generated module, applied to the most recent value.
#[derive(Clone, Debug)]
enum Step {
    Rate(u8, f64, f64),
    Spiking(u8, f64, u64),
    Dense(usize, Vec<f32>),
    Bias(Vec<f32>),
    Conv(usize, usize, bool),
    Pool(bool, usize, usize, bool),
    Lowpass(f64),
    Alpha(f64),
    Flatten,
    Transpose,
    Pad(usize),
    AddSelf,
    Concat,
    Gather(u64),
    Output,
}

fn weird_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(1.0),
        Just(0.5),
        Just(1e-7),
        Just(1e20),
        Just(-0.0),
        (-1000.0f64..1000.0),
        (1e-9f64..1e-3),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..5, weird_f64(), weird_f64()).prop_map(|(k, g, a)| Step::Rate(k, g, a)),
        (0u8..5, weird_f64(), any::<u64>()).prop_map(|(k, g, s)| Step::Spiking(k, g, s)),
        (1usize..6, prop::collection::vec(any::<f32>(), 64)).prop_map(|(m, w)| Step::Dense(m, w)),
        prop::collection::vec(-10.0f32..10.0, 64).prop_map(Step::Bias),
        (1usize..4, 1usize..3, any::<bool>()).prop_map(|(k, s, same)| Step::Conv(k, s, same)),
        (any::<bool>(), 1usize..3, 1usize..3, any::<bool>())
            .prop_map(|(m, p, s, same)| Step::Pool(m, p, s, same)),
        (0.0f64..0.1).prop_map(Step::Lowpass),
        (0.0f64..0.1).prop_map(Step::Alpha),
        Just(Step::Flatten),
        Just(Step::Transpose),
        (0usize..3).prop_map(Step::Pad),
        Just(Step::AddSelf),
        Just(Step::Concat),
        any::<u64>().prop_map(Step::Gather),
        Just(Step::Output),
    ]
}

fn neuron(model: NeuronModel, gain: f64, amplitude: f64) -> Op {
    Op::Neuron(Neuron {
        model,
        gain,
        amplitude,
    })
}

/// Build a module from a recipe; steps that do not fit the current shape are skipped.
fn build(shape: Vec<usize>, steps: &[Step]) -> Module {
    let mut b = Builder::new("gen", 0.001);
    let mut x: ValueId = b.input("x", &shape);
    for (i, s) in steps.iter().enumerate() {
        let name = format!("v{i}");
        let shp = b.module().value(x).ty.shape.clone();
        let n: usize = shp.iter().product();
        let last = *shp.last().unwrap_or(&1);
        let r = match s {
            Step::Rate(k, g, a) => {
                let model = match k {
                    0 => NeuronModel::Relu,
                    1 => NeuronModel::LeakyRelu { negative_slope: *a },
                    2 => NeuronModel::Sigmoid,
                    3 => NeuronModel::Tanh,
                    _ => NeuronModel::LifRate {
                        tau_rc: 0.02,
                        tau_ref: a.abs() % 0.01,
                    },
                };
                b.op1(neuron(model, *g, *a), &[x.into()], &name)
            }
            Step::Spiking(k, g, seed) => {
                let model = match k {
                    0 => NeuronModel::SpikingRelu,
                    1 => NeuronModel::SpikingLeakyRelu {
                        negative_slope: 0.3,
                    },
                    2 => NeuronModel::IfNeuron,
                    3 => NeuronModel::LeakyIf { decay: 0.75 },
                    _ => NeuronModel::Lif {
                        tau_rc: 0.03,
                        tau_ref: 0.001,
                        min_voltage: -1.0,
                    },
                };
                let states = model.num_states();
                let ss: Vec<_> = (0..states)
                    .map(|j| {
                        b.state(
                            &format!("{name}.s{j}"),
                            &shp,
                            StateInit::Uniform {
                                lo: 0.0,
                                hi: 1.0,
                                seed: *seed,
                            },
                        )
                    })
                    .collect();
                let mut args: Vec<Operand> = vec![x.into()];
                args.extend(ss.iter().map(|&s| Operand::State(s)));
                match b.op(neuron(model, *g, 1.0), &args, &name) {
                    Ok(rs) => {
                        for (j, &s) in ss.iter().enumerate() {
                            b.next(s, rs[j + 1]);
                        }
                        Ok(rs[0])
                    }
                    Err(e) => Err(e),
                }
            }
            Step::Dense(m, w) if last * m <= 64 => {
                let c = b.constant_f32(&format!("{name}.w"), &[last, *m], w[..last * m].to_vec());
                b.op1(Op::Dense, &[x.into(), c.into()], &name)
            }
            Step::Bias(v) if last <= 64 => {
                let c = b.constant_f32(&format!("{name}.b"), &[last], v[..last].to_vec());
                b.op1(Op::Bias, &[x.into(), c.into()], &name)
            }
            Step::Conv(k, s, same) if shp.len() == 3 => {
                let cin = shp[2];
                let c = b.constant_f32(
                    &format!("{name}.k"),
                    &[*k, *k, cin, 2],
                    vec![0.25; k * k * cin * 2],
                );
                let attrs = ConvAttrs {
                    strides: vec![*s, 1],
                    padding: if *same { Padding::Same } else { Padding::Valid },
                    dilation: vec![1, 1],
                    groups: 1,
                };
                b.op1(Op::Conv(attrs), &[x.into(), c.into()], &name)
            }
            Step::Pool(is_max, p, s, same) if shp.len() >= 2 && shp.len() <= 4 => {
                let d = shp.len() - 1;
                let attrs = PoolAttrs {
                    pool: vec![*p; d],
                    strides: vec![*s; d],
                    padding: if *same { Padding::Same } else { Padding::Valid },
                };
                b.op1(
                    if *is_max {
                        Op::MaxPool(attrs)
                    } else {
                        Op::AvgPool(attrs)
                    },
                    &[x.into()],
                    &name,
                )
            }
            Step::Lowpass(tau) => {
                let st = b.state(&format!("{name}.syn"), &shp, StateInit::Zeros);
                let r = b.op1(Op::Lowpass { tau: *tau }, &[x.into(), st.into()], &name);
                if let Ok(v) = r {
                    b.next(st, v);
                }
                r
            }
            Step::Alpha(tau) => {
                let y = b.state(&format!("{name}.y"), &shp, StateInit::Zeros);
                let z = b.state(&format!("{name}.z"), &shp, StateInit::Zeros);
                match b.op(
                    Op::Alpha { tau: *tau },
                    &[x.into(), y.into(), z.into()],
                    &name,
                ) {
                    Ok(rs) => {
                        b.next(y, rs[0]);
                        b.next(z, rs[1]);
                        Ok(rs[0])
                    }
                    Err(e) => Err(e),
                }
            }
            Step::Flatten => b.op1(Op::Reshape { shape: vec![n] }, &[x.into()], &name),
            Step::Transpose if shp.len() >= 2 => {
                let mut perm: Vec<usize> = (0..shp.len()).collect();
                perm.swap(0, 1);
                b.op1(Op::Transpose { perm }, &[x.into()], &name)
            }
            Step::Pad(p) => b.op1(
                Op::Pad {
                    pads: vec![[*p, 1]; shp.len()],
                },
                &[x.into()],
                &name,
            ),
            Step::AddSelf => b.op1(Op::Add, &[x.into(), x.into()], &name),
            Step::Concat if !shp.is_empty() => {
                b.op1(Op::Concat { axis: 0 }, &[x.into(), x.into()], &name)
            }
            Step::Gather(seed) if n > 0 => {
                let idx: Vec<i32> = (0..n)
                    .map(|i| ((seed.wrapping_add(i as u64 * 7919)) % n as u64) as i32)
                    .collect();
                let c = b.constant_i32(&format!("{name}.idx"), &[n], idx);
                b.op1(
                    Op::Gather { shape: shp.clone() },
                    &[x.into(), c.into()],
                    &name,
                )
            }
            Step::Output => {
                b.output(&format!("out \"{i}\""), x);
                Ok(x)
            }
            _ => Ok(x),
        };
        if let Ok(v) = r {
            x = v;
        }
    }
    b.output("final", x);
    b.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn print_parse_print_is_identity(
        shape in prop::collection::vec(1usize..5, 1..4),
        steps in prop::collection::vec(step(), 0..10),
    ) {
        let m = build(shape, &steps);
        prop_assert!(check(&m, Target::Any).is_empty(), "generated module must verify:\n{m}\n{:?}", check(&m, Target::Any));
        let text = m.to_string();
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.to_string(), text.clone());
        prop_assert!(check(&parsed, Target::Any).is_empty());
        let json = serde_json::to_string(&m).unwrap();
        let back: Module = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn parser_and_verifier_never_panic_on_random_text(text in "(?s).{0,300}") {
        if let Ok(m) = parse(&text) {
            let _ = check(&m, Target::Neural);
            let _ = m.to_string();
        }
    }

    #[test]
    fn parser_and_verifier_never_panic_on_mutated_modules(
        shape in prop::collection::vec(1usize..4, 1..4),
        steps in prop::collection::vec(step(), 0..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..6, prop::sample::select(vec![
            "", "%", "@", "$", "[", "]", "{", "}", ",", "=", ":", "0", "-1", "1e40", "nan", "f32[", "i32[2]",
            "relu", "next", "state $q : f32[1] = zeros", "\n", "%x", "%v1", "@v0.w", "\"", "#ffffffff", "{tau=-1}",
        ])), 1..6),
    ) {
        let mut text = build(shape, &steps).to_string();
        for (at, del, ins) in edits {
            let mut pos = at.index(text.len() + 1);
            while !text.is_char_boundary(pos) { pos -= 1; }
            let mut end = (pos + del).min(text.len());
            while !text.is_char_boundary(end) { end -= 1; }
            text.replace_range(pos..end, ins);
        }
        if let Ok(m) = parse(&text) {
            let _ = check(&m, Target::Neural);
            let printed = m.to_string();
            // Whatever parses prints canonically, and the canonical text parses to itself.
            let again = parse(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
            prop_assert_eq!(again.to_string(), printed);
        }
    }
}
