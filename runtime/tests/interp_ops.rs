//! Each op of the interpreter against hand-computed values or an independent direct loop.

use ndarray::{ArrayD, IxDyn};
use snnc_ir::{Target, parse, verify};
use snnc_runtime::{Backend, Record, Simulator};

/// Run `text` for `steps` steps with each input held; returns output 0 at every step, flat.
fn run(text: &str, inputs: &[(&[usize], Vec<f32>)], steps: usize) -> Vec<Vec<f32>> {
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    let mut sim = Simulator::new(&m, Backend::Interp, 1).unwrap();
    let arrays: Vec<ArrayD<f32>> = inputs
        .iter()
        .map(|(s, d)| {
            let mut shape = vec![1];
            shape.extend_from_slice(s);
            ArrayD::from_shape_vec(IxDyn(&shape), d.clone()).unwrap()
        })
        .collect();
    let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
    let out = sim.run(steps, &views, Record::AllSteps).unwrap();
    (0..steps)
        .map(|t| {
            out[0]
                .index_axis(ndarray::Axis(1), t)
                .iter()
                .copied()
                .collect()
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

/// Deterministic pseudo-random data in [-1, 1).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn list(v: &[f32]) -> String {
    v.iter()
        .map(|x| format!("{x:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn rate_neurons_match_nengo_formulas() {
    let x = vec![-2.0, -0.5, 0.0, 0.5, 1.5, 3.0];
    type Formula = Box<dyn Fn(f32) -> f32>;
    let cases: Vec<(&str, Formula)> = vec![
        ("relu", Box::new(|j: f32| j.max(0.0))),
        (
            "relu {gain=2, amplitude=0.5}",
            Box::new(|j: f32| 0.5 * (2.0 * j).max(0.0)),
        ),
        (
            "leaky_relu {negative_slope=0.1}",
            Box::new(|j: f32| if j < 0.0 { 0.1 * j } else { j }),
        ),
        ("sigmoid", Box::new(|j: f32| 1.0 / (1.0 + (-j).exp()))),
        ("tanh", Box::new(|j: f32| j.tanh())),
        (
            "lif_rate",
            Box::new(|j: f32| {
                if j > 1.0 {
                    1.0 / (0.002 + 0.02 * (1.0 + 1.0 / (j - 1.0)).ln())
                } else {
                    0.0
                }
            }),
        ),
    ];
    for (op, f) in cases {
        let (name, attrs) = op.split_once(' ').unwrap_or((op, ""));
        let text = format!(
            "module @m dt=0.001\ninput %x : f32[6]\n%y = {name} %x {attrs} : f32[6]\noutput \"y\" = %y\n"
        );
        let want: Vec<f32> = x.iter().map(|&j| f(j)).collect();
        close(&run(&text, &[(&[6], x.clone())], 1)[0], &want, 1e-6);
    }
}

#[test]
fn lif_rate_formula_hand_value() {
    // J=2: 1/(0.002 + 0.02·ln 2) = 63.0400...
    let text =
        "module @m dt=0.001\ninput %x : f32[1]\n%y = lif_rate %x : f32[1]\noutput \"y\" = %y\n";
    close(&run(text, &[(&[1], vec![2.0])], 1)[0], &[63.040_0], 1e-5);
}

#[test]
fn softmax_and_batch_norm_hand_values() {
    let text =
        "module @m dt=0.001\ninput %x : f32[2]\n%y = softmax %x : f32[2]\noutput \"y\" = %y\n";
    let e = 1.0f32.exp();
    close(
        &run(text, &[(&[2], vec![0.0, 1.0])], 1)[0],
        &[1.0 / (1.0 + e), e / (1.0 + e)],
        1e-6,
    );
    let text = "module @m dt=0.001
input %x : f32[2,2]
const @g : f32[2] = [2, 1]
const @b : f32[2] = [0.5, 0]
const @mu : f32[2] = [1, -1]
const @var : f32[2] = [4, 0.25]
%y = batch_norm %x, @g, @b, @mu, @var {epsilon=0} : f32[2,2]
output \"y\" = %y
";
    // (x-mu)/sqrt(var)*g + b
    let want = [
        2.0 * (1.0 - 1.0) / 2.0 + 0.5,
        (0.0 + 1.0) / 0.5,
        2.0 * (3.0 - 1.0) / 2.0 + 0.5,
        (-1.0 + 1.0) / 0.5,
    ];
    close(
        &run(text, &[(&[2, 2], vec![1.0, 0.0, 3.0, -1.0])], 1)[0],
        &want,
        1e-6,
    );
}

#[test]
fn spiking_relu_counts_spikes_with_floor_and_reset_by_subtraction() {
    // v starts at 0.5; J=300 Hz, dt=1 ms: v = 0.8 → 1.1 (spike, 0.1) → 0.4 → 0.7 → 1.0 (spike, 0)
    let text = "module @m dt=0.001
input %j : f32[1]
const @v0 : f32[1] = [0.5]
state $v : f32[1] = @v0
%s, %v1 = spiking_relu %j, $v : f32[1], f32[1]
next $v = %v1
output \"s\" = %s
";
    let out = run(text, &[(&[1], vec![300.0])], 5);
    let spikes: Vec<f32> = out.iter().map(|o| o[0] * 0.001).collect();
    close(&spikes, &[0.0, 1.0, 0.0, 0.0, 1.0], 1e-4);
}

#[test]
fn spiking_rates_match_rate_models_over_ten_seconds() {
    // 10 s at dt=1 ms: the mean spike output equals the rate model within 1%.
    for (spiking, rate, states) in [
        ("spiking_relu", "relu", 1),
        ("lif", "lif_rate", 2),
        (
            "spiking_leaky_relu {negative_slope=0.5}",
            "leaky_relu {negative_slope=0.5}",
            1,
        ),
    ] {
        let currents = [-40.0f32, 1.5, 2.0, 5.0, 20.0, 37.0];
        let mut text = String::from("module @m dt=0.001\ninput %j : f32[6]\n");
        let mut st = Vec::new();
        for k in 0..states {
            text += &format!(
                "state $s{k} : f32[6] = uniform(0, {}, seed={k})\n",
                if k == 0 { 1 } else { 0 }
            );
            st.push(format!("$s{k}"));
        }
        let news: Vec<String> = (0..states).map(|k| format!("%n{k}")).collect();
        let tys = vec!["f32[6]"; states + 1].join(", ");
        let (sname, sattrs) = spiking.split_once(' ').unwrap_or((spiking, ""));
        let (rname, rattrs) = rate.split_once(' ').unwrap_or((rate, ""));
        text += &format!(
            "%y, {} = {sname} %j, {} {sattrs} : {tys}\n",
            news.join(", "),
            st.join(", ")
        );
        for k in 0..states {
            text += &format!("next $s{k} = %n{k}\n");
        }
        text +=
            &format!("%r = {rname} %j {rattrs} : f32[6]\noutput \"y\" = %y\noutput \"r\" = %r\n");
        let m = verify(parse(&text).unwrap(), Target::Any).unwrap();
        let mut sim = Simulator::new(&m, Backend::Interp, 1).unwrap();
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 6]), currents.to_vec()).unwrap();
        let out = sim.run(10_000, &[x.view()], Record::AllSteps).unwrap();
        for k in 0..6 {
            let mean: f64 = out[0]
                .slice(ndarray::s![0, .., k])
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / 10_000.0;
            let want = out[1][[0, 9_999, k]] as f64;
            assert!(
                (mean - want).abs() <= 0.01 * want.abs() + 0.11,
                "{spiking} J={}: spiking mean {mean}, rate {want}",
                currents[k]
            );
        }
    }
}

#[test]
fn if_neuron_has_no_floor_and_never_spikes_negative() {
    // J = -500 then +500 Hz: v goes to -0.5 and must climb back before spiking.
    let text = "module @m dt=0.001
input %j : f32[1]
state $v : f32[1] = zeros
%s, %v1 = if_neuron %j, $v : f32[1], f32[1]
next $v = %v1
output \"v\" = %v1
output \"s\" = %s
";
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    let mut sim = Simulator::new(&m, Backend::Interp, 1).unwrap();
    let mut count = 0.0;
    let mut voltages = Vec::new();
    for t in 0..6 {
        let j = if t == 0 { -500.0 } else { 500.0 };
        sim.step(&[ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![j])
            .unwrap()
            .view()])
            .unwrap();
        voltages.push(sim.output(0)[[0, 0]]);
        count += sim.output(1)[[0, 0]] * 0.001;
    }
    close(&voltages, &[-0.5, 0.0, 0.5, 0.0, 0.5, 0.0], 1e-5);
    close(&[count], &[2.0], 1e-4);
}

#[test]
fn lowpass_is_zero_order_hold() {
    let text = "module @m dt=0.001
input %x : f32[1]
state $y : f32[1] = zeros
%y1 = lowpass %x, $y {tau=0.005} : f32[1]
next $y = %y1
output \"y\" = $y
";
    let out = run(text, &[(&[1], vec![1.0])], 4);
    let a = (-0.2f64).exp();
    // readers of $y see last step's value: 0, 1-a, 1-a², 1-a³
    let want: Vec<f32> = (0..4).map(|k| (1.0 - a.powi(k)) as f32).collect();
    close(&out.iter().map(|o| o[0]).collect::<Vec<_>>(), &want, 1e-6);
}

#[test]
fn alpha_step_response_is_exact_at_samples() {
    // ZOH is exact for a step input: y(t) = 1 − e^{−t/τ}(1 + t/τ).
    let text = "module @m dt=0.001
input %x : f32[1]
state $y : f32[1] = zeros
state $z : f32[1] = zeros
%y1, %z1 = alpha %x, $y, $z {tau=0.01} : f32[1], f32[1]
next $y = %y1
next $z = %z1
output \"y\" = %y1
";
    let out = run(text, &[(&[1], vec![1.0])], 50);
    for (k, o) in out.iter().enumerate() {
        let t = (k + 1) as f64 * 0.001 / 0.01;
        let want = 1.0 - (-t).exp() * (1.0 + t);
        assert!(
            (o[0] as f64 - want).abs() < 1e-5,
            "step {k}: {} vs {want}",
            o[0]
        );
    }
}

/// Independent reference: pad explicitly (TF rule written out again), then a valid 2-D
/// convolution with four nested loops.
#[allow(clippy::too_many_arguments)]
fn conv2d_direct(
    x: &[f32],
    (h, w, c): (usize, usize, usize),
    k: &[f32],
    (kh, kw, cout): (usize, usize, usize),
    (sh, sw): (usize, usize),
    (dh, dw): (usize, usize),
    same: bool,
    groups: usize,
) -> (Vec<f32>, usize, usize) {
    let (ekh, ekw) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
    let (oh, ow, pt, pl) = if same {
        let (oh, ow) = (h.div_ceil(sh), w.div_ceil(sw));
        let th = ((oh - 1) * sh + ekh).saturating_sub(h);
        let tw = ((ow - 1) * sw + ekw).saturating_sub(w);
        (oh, ow, th / 2, tw / 2)
    } else {
        ((h - ekh) / sh + 1, (w - ekw) / sw + 1, 0, 0)
    };
    let cg = c / groups;
    let og = cout / groups;
    let mut y = vec![0.0; oh * ow * cout];
    for i in 0..oh {
        for j in 0..ow {
            for co in 0..cout {
                let g = co / og;
                let mut acc = 0.0;
                for a in 0..kh {
                    for b in 0..kw {
                        let yy = (i * sh + a * dh) as isize - pt as isize;
                        let xx = (j * sw + b * dw) as isize - pl as isize;
                        if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                            continue;
                        }
                        for ci in 0..cg {
                            acc += x[(yy as usize * w + xx as usize) * c + g * cg + ci]
                                * k[((a * kw + b) * cg + ci) * cout + co];
                        }
                    }
                }
                y[(i * ow + j) * cout + co] = acc;
            }
        }
    }
    (y, oh, ow)
}

#[test]
fn conv2d_matches_direct_loops() {
    // (h, w, c, kh, kw, cout, stride, dilation, same, groups)
    let cases = [
        (7, 6, 3, 3, 3, 4, (1, 1), (1, 1), false, 1),
        (7, 6, 3, 2, 2, 4, (1, 1), (1, 1), true, 1), // even kernel, same: extra pad at the end
        (8, 9, 2, 4, 3, 3, (2, 3), (1, 1), true, 1),
        (9, 9, 4, 3, 3, 6, (2, 2), (1, 1), false, 2),
        (10, 8, 2, 3, 2, 2, (1, 1), (2, 3), true, 1),
        (5, 5, 4, 1, 1, 4, (2, 2), (1, 1), false, 4),
    ];
    for (n, &(h, w, c, kh, kw, cout, st, dil, same, groups)) in cases.iter().enumerate() {
        let x = data(h * w * c, n as u64);
        let k = data(kh * kw * (c / groups) * cout, 100 + n as u64);
        let (want, oh, ow) =
            conv2d_direct(&x, (h, w, c), &k, (kh, kw, cout), st, dil, same, groups);
        let text = format!(
            "module @m dt=0.001\ninput %x : f32[{h},{w},{c}]\nconst @k : f32[{kh},{kw},{},{cout}] = [{}]\n\
             %y = conv %x, @k {{strides=[{},{}], padding={}, dilation=[{},{}], groups={groups}}} : f32[{oh},{ow},{cout}]\n\
             output \"y\" = %y\n",
            c / groups,
            list(&k),
            st.0,
            st.1,
            if same { "same" } else { "valid" },
            dil.0,
            dil.1,
        );
        // Big constants print as checksums, but this text carries the values inline: parse accepts both.
        close(&run(&text, &[(&[h, w, c], x)], 1)[0], &want, 1e-5);
    }
}

#[test]
fn conv1d_and_conv3d_match_conv2d_with_unit_axes() {
    // conv1d on [9,2] equals conv2d on [1,9,2] with a [1,k] kernel; conv3d on [1,h,w,c] likewise.
    let x = data(9 * 2, 1);
    let k = data(3 * 2 * 3, 2);
    let (want, _, ow) = conv2d_direct(&x, (1, 9, 2), &k, (1, 3, 3), (1, 2), (1, 1), true, 1);
    let text = format!(
        "module @m dt=0.001\ninput %x : f32[9,2]\nconst @k : f32[3,2,3] = [{}]\n\
         %y = conv %x, @k {{strides=[2], padding=same}} : f32[{ow},3]\noutput \"y\" = %y\n",
        list(&k)
    );
    close(&run(&text, &[(&[9, 2], x.clone())], 1)[0], &want, 1e-5);
    let x3 = data(6 * 5 * 2, 3);
    let k3 = data(2 * 2 * 2 * 3, 4);
    let (want3, oh, ow) = conv2d_direct(&x3, (6, 5, 2), &k3, (2, 2, 3), (1, 1), (1, 1), true, 1);
    let text = format!(
        "module @m dt=0.001\ninput %x : f32[1,6,5,2]\nconst @k : f32[1,2,2,2,3] = [{}]\n\
         %y = conv %x, @k {{strides=[1,1,1], padding=same}} : f32[1,{oh},{ow},3]\noutput \"y\" = %y\n",
        list(&k3)
    );
    close(&run(&text, &[(&[1, 6, 5, 2], x3)], 1)[0], &want3, 1e-5);
}

#[test]
fn pooling_matches_direct_loops() {
    // (h, w, c, ph, pw, sh, sw, same)
    let cases = [
        (6, 6, 2, 2, 2, 2, 2, false),
        (7, 5, 3, 3, 3, 2, 2, true),
        (5, 6, 1, 2, 2, 1, 1, true),
        (8, 8, 2, 3, 2, 1, 2, false),
    ];
    for (n, &(h, w, c, ph, pw, sh, sw, same)) in cases.iter().enumerate() {
        let x = data(h * w * c, 50 + n as u64);
        let (oh, ow, pt, pl) = if same {
            let (oh, ow) = (h.div_ceil(sh), w.div_ceil(sw));
            (
                oh,
                ow,
                ((oh - 1) * sh + ph).saturating_sub(h) / 2,
                ((ow - 1) * sw + pw).saturating_sub(w) / 2,
            )
        } else {
            ((h - ph) / sh + 1, (w - pw) / sw + 1, 0, 0)
        };
        let mut want_max = vec![f32::NEG_INFINITY; oh * ow * c];
        let mut want_avg = vec![0.0; oh * ow * c];
        for i in 0..oh {
            for j in 0..ow {
                for ch in 0..c {
                    let mut cnt = 0.0;
                    for a in 0..ph {
                        for b in 0..pw {
                            let (yy, xx) = (
                                (i * sh + a) as isize - pt as isize,
                                (j * sw + b) as isize - pl as isize,
                            );
                            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                                let v = x[(yy as usize * w + xx as usize) * c + ch];
                                let o = (i * ow + j) * c + ch;
                                want_max[o] = want_max[o].max(v);
                                want_avg[o] += v;
                                cnt += 1.0;
                            }
                        }
                    }
                    want_avg[(i * ow + j) * c + ch] /= cnt;
                }
            }
        }
        for (op, want) in [("max_pool", &want_max), ("avg_pool", &want_avg)] {
            let text = format!(
                "module @m dt=0.001\ninput %x : f32[{h},{w},{c}]\n\
                 %y = {op} %x {{pool=[{ph},{pw}], strides=[{sh},{sw}], padding={}}} : f32[{oh},{ow},{c}]\n\
                 output \"y\" = %y\n",
                if same { "same" } else { "valid" }
            );
            close(&run(&text, &[(&[h, w, c], x.clone())], 1)[0], want, 1e-6);
        }
    }
}

#[test]
fn index_maps_hand_values() {
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
    let cases = [
        (
            "%y = transpose %x {perm=[1,0]} : f32[3,2]",
            vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0],
        ),
        (
            "%y = pad %x {pads=[[1,0],[0,1]]} : f32[3,4]",
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0, 5.0, 0.0],
        ),
        (
            "%y = upsample %x {factors=[2]} : f32[4,3]",
            vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0],
        ),
        (
            "%y = concat %x, %x {axis=1} : f32[2,6]",
            vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 4.0, 5.0],
        ),
        ("%y = reshape %x : f32[6]", x.clone()),
        ("%y = global_max_pool %x : f32[3]", vec![3.0, 4.0, 5.0]),
        ("%y = global_avg_pool %x : f32[3]", vec![1.5, 2.5, 3.5]),
        (
            "%y = add %x, %x, %x : f32[2,3]",
            x.iter().map(|v| 3.0 * v).collect(),
        ),
    ];
    for (line, want) in cases {
        let text = format!("module @m dt=0.001\ninput %x : f32[2,3]\n{line}\noutput \"y\" = %y\n");
        close(&run(&text, &[(&[2, 3], x.clone())], 1)[0], &want, 0.0);
    }
    let text = "module @m dt=0.001
input %x : f32[2,3]
const @b : f32[3] = [1, 2, 3]
const @s : f32[] = [2]
const @i : i32[4] = [5, 0, 0, 2]
const @si : i32[3,2] = [0, 0, 0, 1, 1, 2]
const @sw : f32[3] = [1, -1, 0.5]
%b = bias %x, @b : f32[2,3]
%s = scale %b, @s : f32[2,3]
%g = gather %s, @i : f32[4]
%p = sparse %g, @si, @sw : f32[2]
output \"y\" = %p
";
    // b = [1,3,5,4,6,8]; s = [2,6,10,8,12,16]; g = [16,2,2,10]; p = [16-2, 0.5·2]
    close(&run(text, &[(&[2, 3], x)], 1)[0], &[14.0, 1.0], 0.0);
}

#[test]
fn batch_runs_agree_with_single_runs_and_reset_restores() {
    let text = "module @m dt=0.001
input %x : f32[3]
state $v : f32[3] = uniform(0, 1, seed=3)
%s, %v1 = spiking_relu %x, $v {gain=2} : f32[3], f32[3]
next $v = %v1
output \"s\" = %s
";
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    let xs = data(12, 9)
        .iter()
        .map(|v| (v + 1.0) * 200.0)
        .collect::<Vec<_>>();
    let mut batch = Simulator::new(&m, Backend::Interp, 4).unwrap();
    let all = ArrayD::from_shape_vec(IxDyn(&[4, 3]), xs.clone()).unwrap();
    let a = batch.run(20, &[all.view()], Record::AllSteps).unwrap();
    let mut single = Simulator::new(&m, Backend::Interp, 1).unwrap();
    for b in 0..4 {
        single.reset(0);
        let one = ArrayD::from_shape_vec(IxDyn(&[1, 3]), xs[b * 3..b * 3 + 3].to_vec()).unwrap();
        let o = single.run(20, &[one.view()], Record::AllSteps).unwrap();
        assert_eq!(
            o[0].index_axis(ndarray::Axis(0), 0),
            a[0].index_axis(ndarray::Axis(0), b)
        );
    }
    batch.reset(0);
    let again = batch.run(20, &[all.view()], Record::AllSteps).unwrap();
    assert_eq!(again, a);
    batch.reset(1);
    let other = batch.run(20, &[all.view()], Record::AllSteps).unwrap();
    assert_ne!(
        other, a,
        "a different reset seed draws different initial voltages"
    );
}

#[test]
fn wrong_inputs_are_errors_not_crashes() {
    let text = "module @m dt=0.001\ninput %x : f32[3]\n%y = relu %x : f32[3]\noutput \"y\" = %y\n";
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    for backend in [Backend::Interp, Backend::Jit] {
        let mut sim = Simulator::new(&m, backend, 2).unwrap();
        for shape in [&[2, 4][..], &[1, 3], &[3, 3], &[2, 3, 1], &[2, 0], &[6]] {
            let bad = ArrayD::<f32>::zeros(IxDyn(shape));
            let e = sim.run(1, &[bad.view()], Record::LastStep).unwrap_err();
            assert!(
                e.to_string().contains("input %x"),
                "{backend:?} {shape:?}: {e}"
            );
            assert!(sim.step(&[bad.view()]).is_err(), "{backend:?} {shape:?}");
        }
        assert!(sim.step(&[]).is_err());
        let ok = ArrayD::<f32>::ones(IxDyn(&[2, 3]));
        assert!(sim.step(&[ok.view(), ok.view()]).is_err());
        sim.step(&[ok.view()]).unwrap();
        assert_eq!(sim.output(0), ArrayD::<f32>::ones(IxDyn(&[2, 3])));
        assert!(Simulator::new(&m, backend, 0).is_err());
    }
    // A dump with checksum-only constants verifies but cannot run.
    let text = "module @m dt=0.001\ninput %x : f32[20]\nconst @b : f32[20] #00000000\n%y = bias %x, @b : f32[20]\noutput \"y\" = %y\n";
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    assert!(Simulator::new(&m, Backend::Interp, 1).is_err());
}

/// Instructions that depend only on the inputs are skipped while the inputs stay the same; any
/// change (and a change back) recomputes them, on both backends.
#[test]
fn held_inputs_skip_invariant_work_and_changes_recompute_it() {
    let text = "module @h dt=0.001\ninput %x : f32[2]\nconst @w : f32[2,2] = [1, 2, 3, 4]\n\
                state $v : f32[2] = zeros\n\
                %d = dense %x, @w : f32[2]\n\
                %s, %v1 = spiking_relu %d, $v {gain=1, amplitude=0.001} : f32[2], f32[2]\n\
                next $v = %v1\noutput \"d\" = %d\noutput \"s\" = %s\n";
    let m = verify(parse(text).unwrap(), Target::Any).unwrap();
    let seq: [[f32; 2]; 6] = [
        [1., 0.],
        [1., 0.],
        [0., 1.],
        [0., 1.],
        [1., 0.],
        [f32::NAN, 0.],
    ];
    for backend in [Backend::Interp, Backend::Jit] {
        let mut sim = Simulator::new(&m, backend, 1).unwrap();
        let mut v = [0f32; 2];
        for x in seq {
            let a = ArrayD::from_shape_vec(IxDyn(&[1, 2]), x.to_vec()).unwrap();
            sim.step(&[a.view()]).unwrap();
            let d = [x[0] + 3.0 * x[1], 2.0 * x[0] + 4.0 * x[1]];
            let got = sim.output(0);
            for k in 0..2 {
                assert!(
                    got[[0, k]] == d[k] || (got[[0, k]].is_nan() && d[k].is_nan()),
                    "{backend:?} input {x:?}: {got} vs {d:?}"
                );
                v[k] += d[k].max(0.0) * 0.001;
            }
            let s = sim.output(1);
            for k in 0..2 {
                let spikes = v[k].floor();
                assert_eq!(s[[0, k]], spikes, "{backend:?} input {x:?}");
                v[k] -= spikes;
            }
        }
    }
}
