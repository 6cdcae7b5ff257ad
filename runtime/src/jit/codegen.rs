//! Code for the instructions the JIT computes itself: fused lane-wise and indexed loops, merged
//! neuron and synapse instructions, pooling windows and row-compressed `sparse` maps.

use super::abi::{Hosts, Tables};
use super::emit::{
    emit_fold, emit_loop, emit_map, fconst, load, load_gathered, load_index, select, store,
};
use super::fusion::{Lanes, elementwise_width, fixed_rows, identity_gather};
use super::lanes::{LifSlot, update};
use crate::frame::Frame;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use cranelift_frontend::FunctionBuilder;
use snnc_ir::semantics::LifParams;
use snnc_ir::{ConstData, Inst, Module, NeuronModel, Op, Operand};

/// What code generation reads: the module, the frame it runs on, the host functions.
pub(super) struct Cx<'a> {
    pub(super) m: &'a Module,
    pub(super) f: &'a Frame,
    pub(super) hosts: &'a Hosts,
}

/// A LIF instruction's parameters and result slot, kept in `tables`; `None` for other ops.
fn lif_slot(cx: &Cx, tables: &mut Tables, inst: &Inst) -> Option<LifSlot> {
    let Op::Neuron(n) = &inst.op else { return None };
    if !matches!(n.model, NeuronModel::Lif { .. }) {
        return None;
    }
    let mut slot = Box::new((LifParams::new(n, cx.m.dt), [0f32; 4]));
    let ptrs = (&slot.0 as *const LifParams, slot.1.as_mut_ptr());
    tables.lif.push(slot);
    Some(ptrs)
}

/// Emit a merged neuron or lowpass instruction (several groups): one loop over each run of
/// consecutive groups whose every operand and result starts where the previous group's ends in
/// the arena (the memory plan places merged groups so; then the whole instruction is one loop).
/// Results never overlap operands except a state updated in its own place, whose element `k` is
/// read before it is written, so one loop over a run computes what group-by-group would.
fn emit_merged(b: &mut FunctionBuilder, cx: &Cx, tables: &mut Tables, inst: &Inst) -> bool {
    let (m, it) = (cx.m, cx.f);
    let single = snnc_ir::Inst {
        op: inst.op.clone(),
        args: inst.group(0).0.to_vec(),
        results: inst.group(0).1.to_vec(),
    };
    if elementwise_width(m, &single).is_none() {
        return false;
    }
    let lif = lif_slot(cx, tables, inst);
    let ptr = |o: Operand| it.operand_ptr(o);
    if inst.args.iter().any(|a| matches!(a, Operand::Const(_))) {
        // A constant is stored once: each group loops sample by sample and reads it at the
        // element within the sample.
        for g in 0..inst.groups() {
            let (args, results) = inst.group(g);
            let n = m.value(results[0]).ty.num_elements();
            emit_loop(b, it.batch(), |b, s| {
                emit_map(b, n, |b, ty, r| {
                    let k0 = b.ins().imul_imm_s(s, n as i64);
                    let k = b.ins().iadd(k0, r);
                    let vals: Vec<Value> = args
                        .iter()
                        .map(|&a| {
                            let at = if matches!(a, Operand::Const(_)) { r } else { k };
                            load(b, ty, ptr(a), at)
                        })
                        .collect();
                    let outs = update(b, ty, (&inst.op, m.dt), cx.hosts, lif, &vals);
                    for (&res, v) in results.iter().zip(outs) {
                        store(b, ptr(Operand::Value(res)), k, v);
                    }
                });
            });
        }
        return true;
    }
    let follows = |g: usize| {
        let ((a0, r0), (a1, r1)) = (inst.group(g - 1), inst.group(g));
        let ops = a0.iter().zip(a1).map(|(&p, &q)| (p, q));
        let res = r0
            .iter()
            .zip(r1)
            .map(|(&p, &q)| (Operand::Value(p), Operand::Value(q)));
        ops.chain(res).all(
            |(p, q)| matches!((it.span(p), it.span(q)), (Some(x), Some(y)) if x.end == y.start),
        )
    };
    let mut g = 0;
    while g < inst.groups() {
        let mut h = g + 1;
        while h < inst.groups() && follows(h) {
            h += 1;
        }
        let (args, results) = inst.group(g);
        let count: usize = (g..h)
            .map(|k| m.value(inst.group(k).1[0]).ty.num_elements())
            .sum::<usize>()
            * it.batch();
        emit_map(b, count, |b, ty, k| {
            let vals: Vec<Value> = args.iter().map(|&a| load(b, ty, ptr(a), k)).collect();
            let outs = update(b, ty, (&inst.op, m.dt), cx.hosts, lif, &vals);
            for (&r, v) in results.iter().zip(outs) {
                store(b, ptr(Operand::Value(r)), k, v);
            }
        });
        g = h;
    }
    true
}

/// Emit consecutive lane-wise instructions `group` (same element count; `bias`/`scale` of one
/// width `w`) as one loop: each element goes through the whole chain in registers, and a result
/// is stored only when something outside the chain reads it.
pub(super) fn emit_elementwise_group(
    b: &mut FunctionBuilder,
    cx: &Cx,
    tables: &mut Tables,
    (group, lanes): (&[usize], Lanes),
    stored: &[bool],
) {
    let (m, it) = (cx.m, cx.f);
    let batch = it.batch();
    let first = &m.insts[group[0]];
    let per_sample = m.value(first.results[0]).ty.num_elements();
    let total = per_sample * batch;
    let lif: Vec<Option<LifSlot>> = group
        .iter()
        .map(|&i| lif_slot(cx, tables, &m.insts[i]))
        .collect();
    // A constant of the result's size (not a broadcast `bias`/`scale` parameter) is read at the
    // element within the sample, so such a group loops sample by sample.
    let per_sample_consts = group.iter().any(|&i| {
        let inst = &m.insts[i];
        // (An identity gather's index table is not read.)
        let broadcast = matches!(inst.op, Op::Bias | Op::Scale) || identity_gather(m, inst);
        inst.args.iter().enumerate().any(|(k, a)| {
            matches!(a, Operand::Const(_)) && !(broadcast && k == 1) && lanes != Lanes::Indexed
        })
    });
    // Index tables of the sparse maps, built once and kept alive with the code.
    let mut rows: std::collections::HashMap<usize, (usize, Vec<f32>, *const i32)> =
        Default::default();
    // Indexed reads of the same operand at the same indices for every element (a max-pool
    // circuit's gather repeats one of its differences' terms) load once: read site (instruction,
    // term) → an id shared by equal sites.
    let mut site_ids: std::collections::HashMap<(Operand, Vec<i32>), usize> = Default::default();
    let mut sites: std::collections::HashMap<(usize, usize), usize> = Default::default();
    // Sites whose indices run in steps of one within every aligned group of four elements.
    let mut runs: std::collections::HashSet<(usize, usize)> = Default::default();
    for &i in group {
        let inst = &m.insts[i];
        let mut site = |t: usize, seq: Vec<i32>| {
            if seq
                .chunks_exact(4)
                .all(|q| q.iter().enumerate().all(|(l, &v)| v == q[0] + l as i32))
            {
                runs.insert((i, t));
            }
            let n = site_ids.len();
            let id = *site_ids.entry((inst.args[0], seq)).or_insert(n);
            sites.insert((i, t), id);
        };
        match inst.op {
            Op::Sparse { .. } => {
                let fr = fixed_rows(m, inst).expect("grouped sparse maps have fixed rows");
                for t in 0..fr.d {
                    site(t, fr.cols.iter().skip(t).step_by(fr.d).copied().collect());
                }
                rows.insert(i, (fr.d, fr.weights, fr.cols.as_ptr()));
                tables.index.push(fr.cols);
            }
            Op::Gather { .. } => {
                if let Operand::Const(c) = inst.args[1]
                    && let ConstData::I32(idx) = &m.constant(c).data
                {
                    site(0, idx.clone());
                }
            }
            _ => {}
        }
    }
    // `k`: element over the whole batch; `c`: index into a broadcast constant; `sr`: sample and
    // element within it (groups that loop sample by sample only).
    let body =
        |b: &mut FunctionBuilder, ty: Type, k: Value, c: Value, sr: Option<(Value, Value)>| {
            let mut vals: std::collections::HashMap<snnc_ir::ValueId, Value> = Default::default();
            let mut loaded: std::collections::HashMap<usize, Value> = Default::default();
            for (gi, &i) in group.iter().enumerate() {
                let inst = &m.insts[i];
                let arg = |b: &mut FunctionBuilder, o: Operand| match o {
                    Operand::Value(v) if vals.contains_key(&v) => vals[&v],
                    Operand::Const(_) => {
                        let (_, r) = sr.expect("groups with constants loop per sample");
                        load(b, ty, it.operand_ptr(o), r)
                    }
                    _ => load(b, ty, it.operand_ptr(o), k),
                };
                let in0 = |b: &mut FunctionBuilder| {
                    let (s, _) = sr.expect("indexed instructions run in indexed groups");
                    b.ins().imul_imm_s(s, it.sample_stride(inst.args[0]) as i64)
                };
                let results: Vec<Value> = match &inst.op {
                    // A copy: element `k` of the operand.
                    Op::Gather { .. } if identity_gather(m, inst) => vec![arg(b, inst.args[0])],
                    Op::Gather { .. } => {
                        let base = in0(b);
                        let r = sr.expect("indexed").1;
                        let x = it.operand_ptr(inst.args[0]);
                        let idx = it.index_ptr(inst.args[1]);
                        let v = match sites.get(&(i, 0)).and_then(|id| loaded.get(id)) {
                            Some(&v) => v,
                            None => {
                                let runs = runs.contains(&(i, 0));
                                load_gathered(b, ty, x, base, (idx, r, 1, runs))
                            }
                        };
                        if let Some(&id) = sites.get(&(i, 0)) {
                            loaded.insert(id, v);
                        }
                        vec![v]
                    }
                    Op::Sparse { .. } => {
                        let base = in0(b);
                        let r = sr.expect("indexed").1;
                        let (d, weights, cols) = &rows[&i];
                        let x = it.operand_ptr(inst.args[0]);
                        let e0 = b.ins().imul_imm_s(r, *d as i64);
                        let mut acc = fconst(b, ty, 0.0);
                        for (t, &wt) in weights.iter().enumerate() {
                            let id = sites[&(i, t)];
                            let xv = match loaded.get(&id) {
                                Some(&v) => v,
                                None => {
                                    let pos = b.ins().iadd_imm_s(e0, t as i64);
                                    let runs = runs.contains(&(i, t));
                                    load_gathered(b, ty, x, base, (*cols, pos, *d, runs))
                                }
                            };
                            loaded.insert(id, xv);
                            let wv = fconst(b, ty, wt);
                            let prod = b.ins().fmul(wv, xv);
                            acc = b.ins().fadd(acc, prod);
                        }
                        vec![acc]
                    }
                    Op::Neuron(_) | Op::Lowpass { .. } | Op::Alpha { .. } => {
                        let vals: Vec<Value> = inst.args.iter().map(|&o| arg(b, o)).collect();
                        update(b, ty, (&inst.op, m.dt), cx.hosts, lif[gi], &vals)
                    }
                    Op::Add => {
                        let mut acc = arg(b, inst.args[0]);
                        for &o in &inst.args[1..] {
                            let v = arg(b, o);
                            acc = b.ins().fadd(acc, v);
                        }
                        vec![acc]
                    }
                    Op::Reshape { .. } => vec![arg(b, inst.args[0])],
                    Op::Bias | Op::Scale => {
                        let xv = arg(b, inst.args[0]);
                        let p = it.operand_ptr(inst.args[1]);
                        let pv = if m
                            .operand_type(inst.args[1])
                            .expect("verified")
                            .num_elements()
                            == 1
                        {
                            let zero = b.ins().iconst(types::I64, 0);
                            let s = load(b, types::F32, p, zero);
                            if ty.is_vector() {
                                b.ins().splat(ty, s)
                            } else {
                                s
                            }
                        } else {
                            load(b, ty, p, c)
                        };
                        vec![if inst.op == Op::Bias {
                            b.ins().fadd(xv, pv)
                        } else {
                            b.ins().fmul(xv, pv)
                        }]
                    }
                    _ => unreachable!("only lane-wise instructions are grouped"),
                };
                for (&r, v) in inst.results.iter().zip(results) {
                    if stored[r.index()] {
                        store(b, it.operand_ptr(Operand::Value(r)), k, v);
                    }
                    vals.insert(r, v);
                }
            }
        };
    let per_sample_body = |b: &mut FunctionBuilder, ty: Type, s: Value, r: Value, c: Value| {
        let k0 = b.ins().imul_imm_s(s, per_sample as i64);
        let k = b.ins().iadd(k0, r);
        // An indexed group broadcasts only scalars, so its `c` is never read past 0.
        let c = if lanes == Lanes::Indexed { k } else { c };
        body(b, ty, k, c, Some((s, r)))
    };
    match lanes {
        Lanes::Width(w) if per_sample_consts && w > 1 => emit_loop(b, batch, |b, s| {
            emit_loop(b, per_sample / w, |b, row| {
                let row0 = b.ins().imul_imm_s(row, w as i64);
                emit_map(b, w, |b, ty, c| {
                    let r = b.ins().iadd(row0, c);
                    per_sample_body(b, ty, s, r, c)
                });
            });
        }),
        Lanes::Indexed | Lanes::Width(_) if per_sample_consts || lanes == Lanes::Indexed => {
            emit_loop(b, batch, |b, s| {
                emit_map(b, per_sample, |b, ty, r| per_sample_body(b, ty, s, r, r));
            })
        }
        Lanes::Width(1) => emit_map(b, total, |b, ty, k| body(b, ty, k, k, None)),
        Lanes::Width(w) => emit_loop(b, total / w, |b, r| {
            let row0 = b.ins().imul_imm_s(r, w as i64);
            emit_map(b, w, |b, ty, c| {
                let k = b.ins().iadd(row0, c);
                body(b, ty, k, c, None)
            });
        }),
        Lanes::Indexed => unreachable!("handled above"),
    }
}

/// Emit `for s in 0..batch { for r in 0..rows { body(in0, out0, r, lo, hi) } }` over a
/// row-compressed table: `in0`/`out0` are sample `s`'s first input and output elements
/// (`s · x_stride`, `s · n_out`), `lo..hi` row `r`'s entries `starts[r]..starts[r + 1]`.
fn emit_rows(
    b: &mut FunctionBuilder,
    batch: usize,
    (x_stride, n_out): (usize, usize),
    (rows, starts): (usize, *const i32),
    mut body: impl FnMut(&mut FunctionBuilder, Value, Value, Value, Value, Value),
) {
    emit_loop(b, batch, |b, s| {
        let in0 = b.ins().imul_imm_s(s, x_stride as i64);
        let out0 = b.ins().imul_imm_s(s, n_out as i64);
        emit_loop(b, rows, |b, r| {
            let lo = load_index(b, starts, r);
            let r1 = b.ins().iadd_imm_s(r, 1);
            let hi = load_index(b, starts, r1);
            body(b, in0, out0, r, lo, hi);
        });
    });
}

/// Emit instruction `i` (not part of a fused group) when the JIT computes it in generated code;
/// false leaves it to a host job.
pub(super) fn emit_inst(b: &mut FunctionBuilder, cx: &Cx, tables: &mut Tables, i: usize) -> bool {
    let (m, it) = (cx.m, cx.f);
    let inst = &m.insts[i];
    if inst.groups() > 1 {
        return emit_merged(b, cx, tables, inst);
    }
    let batch = it.batch();
    let is_const = |o: &Operand| matches!(o, Operand::Const(_));
    let out = |k: usize| it.operand_ptr(Operand::Value(inst.results[k]));
    match &inst.op {
        Op::Sparse { .. } if is_const(&inst.args[2]) => {
            // Rows in compressed form: entries sorted by output row, stably, so each row sums
            // its terms in the interpreter's order, starting from zero as the interpreter does.
            // (Maps whose rows all share their terms' weights run in fused loops instead.)
            let (x_stride, n_out) = (
                it.sample_stride(inst.args[0]),
                m.value(inst.results[0]).ty.num_elements(),
            );
            let Operand::Const(ic) = inst.args[1] else {
                return false;
            };
            let Operand::Const(wc) = inst.args[2] else {
                return false;
            };
            let (ConstData::I32(pairs), ConstData::F32(w)) =
                (&m.constant(ic).data, &m.constant(wc).data)
            else {
                return false;
            };
            let mut order: Vec<usize> = (0..w.len()).collect();
            order.sort_by_key(|&e| pairs[2 * e]);
            let mut starts = vec![0i32; n_out + 1];
            for e in 0..w.len() {
                starts[pairs[2 * e] as usize + 1] += 1;
            }
            for r in 0..n_out {
                starts[r + 1] += starts[r];
            }
            let cols: Vec<i32> = order.iter().map(|&e| pairs[2 * e + 1]).collect();
            let ws: Vec<f32> = order.iter().map(|&e| w[e]).collect();
            let (x, y) = (it.operand_ptr(inst.args[0]), out(0));
            let (starts_p, cols_p, ws_p) = (starts.as_ptr(), cols.as_ptr(), ws.as_ptr());
            tables.index.extend([starts, cols]);
            tables.weight.push(ws);
            emit_rows(
                b,
                batch,
                (x_stride, n_out),
                (n_out, starts_p),
                |b, in0, out0, r, lo, hi| {
                    let zero = b.ins().f32const(0.0);
                    let acc = emit_fold(b, lo, hi, zero, |b, e, acc| {
                        let c = load_index(b, cols_p, e);
                        let wv = load(b, types::F32, ws_p, e);
                        let si = b.ins().iadd(in0, c);
                        let xv = load(b, types::F32, x, si);
                        let prod = b.ins().fmul(wv, xv);
                        b.ins().fadd(acc, prod)
                    });
                    let di = b.ins().iadd(out0, r);
                    store(b, y, di, acc);
                },
            );
            true
        }
        Op::AvgPool(_) | Op::MaxPool(_) | Op::GlobalAvgPool | Op::GlobalMaxPool => {
            // Each output position folds its window's input positions (padding left out, as
            // the interpreter counts it) in the interpreter's order, f32x4 over the channels.
            let in_shape = &m.operand_type(inst.args[0]).expect("verified").shape;
            let d = in_shape.len() - 1;
            let c = in_shape[d];
            let positions: usize = in_shape[..d].iter().product();
            let (starts, cols): (Vec<i32>, Vec<i32>) = match &inst.op {
                Op::AvgPool(p) | Op::MaxPool(p) => {
                    let Ok(geo) = crate::window::Window3::new(
                        in_shape,
                        &p.pool,
                        &p.strides,
                        &vec![1; d],
                        p.padding,
                    ) else {
                        return false;
                    };
                    let mut per = vec![Vec::new(); geo.out_positions()];
                    geo.for_each(|o, _, src| {
                        if let Some(i) = src {
                            per[o].push(i as i32);
                        }
                    });
                    let mut starts = vec![0i32];
                    for w in &per {
                        starts.push(starts[starts.len() - 1] + w.len() as i32);
                    }
                    (starts, per.concat())
                }
                _ => (vec![0, positions as i32], (0..positions as i32).collect()),
            };
            let n_pos = starts.len() - 1;
            let is_max = matches!(inst.op, Op::MaxPool(_) | Op::GlobalMaxPool);
            let (x_stride, n_out) = (it.sample_stride(inst.args[0]), n_pos * c);
            let (x, y) = (it.operand_ptr(inst.args[0]), out(0));
            let (starts_p, cols_p) = (starts.as_ptr(), cols.as_ptr());
            tables.index.extend([starts, cols]);
            emit_rows(
                b,
                batch,
                (x_stride, n_out),
                (n_pos, starts_p),
                |b, in0, out0, o, lo, hi| {
                    let row = b.ins().imul_imm_s(o, c as i64);
                    let row = b.ins().iadd(out0, row);
                    emit_map(b, c, |b, ty, ch| {
                        let init = fconst(b, ty, if is_max { f32::NEG_INFINITY } else { 0.0 });
                        let acc = emit_fold(b, lo, hi, init, |b, e, acc| {
                            let src = load_index(b, cols_p, e);
                            let at = b.ins().imul_imm_s(src, c as i64);
                            let at = b.ins().iadd(at, ch);
                            let at = b.ins().iadd(in0, at);
                            let xv = load(b, ty, x, at);
                            if is_max {
                                // `acc.max(x)`: a NaN input never wins.
                                select(b, ty, FloatCC::GreaterThan, (xv, acc), xv, acc)
                            } else {
                                b.ins().fadd(acc, xv)
                            }
                        });
                        let acc = if is_max {
                            acc
                        } else {
                            let n = b.ins().isub(hi, lo);
                            let n = b.ins().fcvt_from_uint(types::F32, n);
                            let n = if ty.is_vector() {
                                b.ins().splat(ty, n)
                            } else {
                                n
                            };
                            b.ins().fdiv(acc, n)
                        };
                        let at = b.ins().iadd(row, ch);
                        store(b, y, at, acc);
                    });
                },
            );
            true
        }
        _ => false,
    }
}
