//! (module text: to be written)
