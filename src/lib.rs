//! gsv: GPT-SoVITS inference on ONNX Runtime.
//!
//! Data flows text -> [`text`] -> [`reference`] -> [`gpt`] -> [`vocoder`] -> WAV or [`codec`] -> [`http`].
//! Only [`runtime`] touches `ort`, and it knows no model; each stage's model struct (`text::bert::Bert`,
//! `reference::Hubert`, `gpt::Gpt`, `vocoder::Vocoder`) owns its graphs and declares their contracts
//! ([`bundle::GraphContract`]); stages take and return plain data; [`engine`] runs them in order, one request path,
//! on supervised worker threads.

pub mod batch;
pub mod bundle;
pub mod codec;
pub mod engine;
pub mod gpt;
pub mod http;
pub mod logging;
pub mod npy;
pub mod reference;
pub mod runtime;
pub mod text;
pub mod vocoder;
pub mod voices;
pub mod wav;
