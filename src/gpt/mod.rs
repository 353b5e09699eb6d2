//! (module gpt: to be written)
