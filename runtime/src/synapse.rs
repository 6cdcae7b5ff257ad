//! Synapse coefficients (zero-order-hold discretisations, as Nengo's `LinearFilter`).

/// The exact ZOH step of Nengo's `Alpha(tau) = 1/(tau·s + 1)²` in the state coordinates the IR
/// uses: `y` (the filtered output) and `z` (the first state of Nengo's controllable canonical
/// form). One step is
/// `y' = yz·z + yy·y + yu·u` and `z' = zz·z + zy·y + zu·u`.
/// Derivation (SPEC.md, `alpha`): the state matrix has the double eigenvalue `−1/tau`, so
/// `exp(A·dt) = e^{−dt/tau}(I + (A + I/tau)·dt)` in closed form; `tau = 0` is a passthrough.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlphaCoefficients {
    /// Weight of `z` in `y'`.
    pub yz: f32,
    /// Weight of `y` in `y'`.
    pub yy: f32,
    /// Weight of `u` in `y'`.
    pub yu: f32,
    /// Weight of `z` in `z'`.
    pub zz: f32,
    /// Weight of `y` in `z'`.
    pub zy: f32,
    /// Weight of `u` in `z'`.
    pub zu: f32,
}

impl AlphaCoefficients {
    /// Coefficients for step `dt` and time constant `tau` (seconds), computed in f64.
    pub fn new(dt: f64, tau: f64) -> Self {
        if tau <= 0.0 {
            return AlphaCoefficients {
                yz: 0.0,
                yy: 0.0,
                yu: 1.0,
                zz: 0.0,
                zy: 0.0,
                zu: 0.0,
            };
        }
        let e = (-dt / tau).exp();
        let r = dt / tau;
        AlphaCoefficients {
            yz: (e * dt / (tau * tau)) as f32,
            yy: (e * (1.0 + r)) as f32,
            yu: ((1.0 - e) - r * e) as f32,
            zz: (e * (1.0 - r)) as f32,
            zy: (-e * dt) as f32,
            zu: (dt * e) as f32,
        }
    }
}
