//! (module bundle: to be written)
