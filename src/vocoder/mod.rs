//! (module vocoder: to be written)
