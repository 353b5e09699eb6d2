//! gsv: GPT-SoVITS inference on ONNX Runtime.
//!
//! Data flows text -> [`text`] -> [`reference`] -> [`gpt`] -> [`vocoder`] -> WAV -> [`http`].
//! Only [`runtime`] touches `ort`; stages take and return plain data; [`engine`] runs them in order.

pub mod bundle;
pub mod engine;
pub mod gpt;
pub mod http;
pub mod npy;
pub mod reference;
pub mod runtime;
pub mod text;
pub mod vocoder;
pub mod wav;
