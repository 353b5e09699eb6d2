//! (module reference: to be written)
