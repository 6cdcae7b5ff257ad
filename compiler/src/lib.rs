//! # snnc-compiler: front-ends and passes
//!
//! Turns models into snnc IR: the Keras front-end ([`keras`]) now, the optimisation passes next.
//! Every transformation's contract: it takes a module and returns one that verifies again.

pub mod keras;

pub mod calibrate;
pub mod driver;
pub mod passes;
pub mod probe;
