//! (module runtime: to be written)
