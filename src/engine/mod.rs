//! (module engine: to be written)
