//! The state-initialisation generator. SPEC.md fixes it exactly so every backend draws the same
//! numbers: element `k` of a `uniform(lo, hi, seed=s)` state after `reset(r)` is
//! `lo + (hi − lo) · (splitmix64(s ⊕ (r · 0x9E3779B97F4A7C15) + (k + 1) · 0x9E3779B97F4A7C15) >> 40) / 2^24`.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
pub fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fill `out` with the uniform draws of a state with seed `state_seed` after `reset(reset_seed)`.
pub fn uniform_fill(out: &mut [f32], lo: f64, hi: f64, state_seed: u64, reset_seed: u64) {
    let key = state_seed ^ reset_seed.wrapping_mul(GOLDEN);
    for (k, x) in out.iter_mut().enumerate() {
        let bits = splitmix64(key.wrapping_add((k as u64 + 1).wrapping_mul(GOLDEN))) >> 40;
        let u = bits as f64 / (1u64 << 24) as f64;
        *x = (lo + (hi - lo) * u) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_and_keyed() {
        let mut a = vec![0.0; 10000];
        uniform_fill(&mut a, 0.0, 1.0, 7, 0);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mut b = vec![0.0; 10000];
        uniform_fill(&mut b, 0.0, 1.0, 7, 1);
        assert_ne!(a, b);
        let mut c = vec![0.0; 10000];
        uniform_fill(&mut c, 0.0, 1.0, 7, 0);
        assert_eq!(a, c);
    }
}
