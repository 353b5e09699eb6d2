//! WAV writing: PCM16 mono headers (known and unknown length).
