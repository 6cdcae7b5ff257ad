//! TensorFlow's `tf.random.stateless_uniform` on the CPU, for the initial voltages of
//! keras-spiking's `SpikingActivation` (which draws them from its `seed`).
//!
//! TensorFlow scrambles the seed pair into a Philox-4×32-10 key and counter (one Philox call on
//! the seed words under a fixed key), then fills the output four floats per Philox call, in
//! row-major order, advancing the 128-bit counter by one per call. Each 32-bit word becomes a
//! float in `[0, 1)` from its low 23 bits as the mantissa of a number in `[1, 2)`, minus one.
//! (Algorithm: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the seed
//! scrambling and float conversion are TensorFlow's `stateless_random_ops` and
//! `random_distributions`.) The fixtures' `spiking_activation` models check it against
//! TensorFlow 2.13 and 2.15 draws.

const M0: u64 = 0xD251_1F53;
const M1: u64 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Ten Philox rounds of `counter` under `key`.
fn philox(mut c: [u32; 4], mut k: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        let p0 = M0 * u64::from(c[0]);
        let p1 = M1 * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        if round < 9 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
    }
    c
}

/// `tf.random.stateless_uniform([n], seed=(s0, s1))` in float32.
pub fn stateless_uniform(n: usize, s0: i64, s1: i64) -> Vec<f32> {
    let (s0, s1) = (s0 as u64, s1 as u64);
    let mix = philox(
        [s0 as u32, (s0 >> 32) as u32, s1 as u32, (s1 >> 32) as u32],
        [0x3EC8_F720, 0x0246_1E29],
    );
    let key = [mix[0], mix[1]];
    let mut counter = [0, 0, mix[2], mix[3]];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        for w in philox(counter, key) {
            out.push(f32::from_bits((w & 0x7F_FFFF) | 0x3F80_0000) - 1.0);
        }
        // The 128-bit counter, low word first.
        for word in &mut counter {
            *word = word.wrapping_add(1);
            if *word != 0 {
                break;
            }
        }
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    /// Draws printed by TensorFlow 2.13: `tf.random.stateless_uniform([1, 10], seed=(s, s))`.
    #[test]
    fn matches_tensorflow() {
        let u = super::stateless_uniform(10, 0, 0);
        assert_eq!(&u[..3], &[0.211_015_46, 0.706_01, 0.800_063_4]);
        let u = super::stateless_uniform(3, 12345, 12345);
        assert_eq!(u, [0.146_908_64, 0.345_459_22, 0.178_286_43]);
    }
}
