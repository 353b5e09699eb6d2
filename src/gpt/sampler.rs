//! Token sampling in GPT-SoVITS's exact order (`AR/models/utils.py` `logits_to_probs` + `sample`):
//!
//! 1. repetition penalty on every distinct previous token, prompt codes included: negative logits × r,
//!    positive ÷ r, written back into the logits (the caller's EOS check sees the penalised values);
//!    skipped when r == 1;
//! 2. top-p only when `top_p < 1`: sort descending, cumulative softmax, drop every token whose cumulative
//!    probability is > top_p, except the most likely one (always kept);
//! 3. ÷ max(temperature, 1e-5);
//! 4. top-k: values below the k-th largest -> -inf (ties with the k-th are kept); `top_k == 0` disables it;
//! 5. softmax;
//! 6. draw `argmax(p / q)` with `q ~ Exponential(1)` (one per vocab entry) from a seeded ChaCha8 RNG;
//!    `top_k == 1` is greedy (first maximum, as `torch.argmax`) and draws nothing.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Sampling parameters (upstream names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub top_k: usize,
    pub top_p: f32,
    pub temperature: f32,
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    /// api2 defaults: top_k 15 (the GPT config's), top_p 1, temperature 1, repetition_penalty 1.35.
    fn default() -> Self {
        SamplingParams { top_k: 15, top_p: 1.0, temperature: 1.0, repetition_penalty: 1.35 }
    }
}

/// The draw strategy, like candle's `LogitsProcessor` `Sampling` enum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// top_k == 1: the largest probability.
    Greedy,
    /// Exponential-race draw over the filtered distribution.
    Random,
}

/// Seeded sampler. `sample` is deterministic given the seed and the sequence of calls.
pub struct Sampler {
    pub params: SamplingParams,
    rng: ChaCha8Rng,
}

/// Steps 1: repetition penalty, in place, over the distinct tokens of `previous` that index into `logits`.
pub fn apply_repetition_penalty(logits: &mut [f32], previous: &[i64], r: f32) {
    if r == 1.0 {
        return;
    }
    // A token seen twice is penalised once (torch gathers then scatters the same value).
    let mut seen = vec![false; logits.len()];
    for &t in previous {
        if t < 0 || t as usize >= logits.len() {
            continue;
        }
        let i = t as usize;
        if seen[i] {
            continue;
        }
        seen[i] = true;
        let s = logits[i];
        logits[i] = if s < 0.0 { s * r } else { s / r };
    }
}

/// Softmax in f32 (max-subtracted). `-inf` entries get probability 0.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return vec![0.0; x.len()];
    }
    let mut e: Vec<f32> = x.iter().map(|&v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    for v in e.iter_mut() {
        *v /= s;
    }
    e
}

/// First index of the maximum (`torch.argmax`); NaN never wins.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = match x.first() {
        Some(v) if !v.is_nan() => *v,
        _ => f32::NEG_INFINITY,
    };
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v > bv {
            best = i;
            bv = v;
        }
    }
    best
}

/// Steps 1–5: the probabilities `sample` draws from. `logits` receives the penalised values (step 1 only).
pub fn logits_to_probs(logits: &mut [f32], previous: &[i64], p: &SamplingParams) -> Vec<f32> {
    apply_repetition_penalty(logits, previous, p.repetition_penalty);
    let mut work: Vec<f32> = logits.to_vec();
    if p.top_p < 1.0 {
        let mut order: Vec<usize> = (0..work.len()).collect();
        // descending; stable so equal values keep index order
        order.sort_by(|&a, &b| work[b].partial_cmp(&work[a]).unwrap_or(std::cmp::Ordering::Equal));
        let sorted: Vec<f32> = order.iter().map(|&i| work[i]).collect();
        let probs = softmax(&sorted);
        let mut cum = 0.0f32;
        let mut remove = vec![false; work.len()];
        for (rank, &i) in order.iter().enumerate() {
            cum += probs[rank];
            if rank > 0 && cum > p.top_p {
                remove[i] = true;
            }
        }
        for (v, r) in work.iter_mut().zip(remove) {
            if r {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    let t = p.temperature.max(1e-5);
    for v in work.iter_mut() {
        *v /= t;
    }
    if p.top_k > 0 && p.top_k < work.len() {
        let mut vals = work.clone();
        // k-th largest
        let k = p.top_k;
        vals.select_nth_unstable_by(k - 1, |a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
        let pivot = vals[k - 1];
        for v in work.iter_mut() {
            if *v < pivot {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    softmax(&work)
}

impl Sampler {
    pub fn new(params: SamplingParams, seed: u64) -> Sampler {
        Sampler { params, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    pub fn strategy(&self) -> Strategy {
        if self.params.top_k == 1 {
            Strategy::Greedy
        } else {
            Strategy::Random
        }
    }

    /// Sample one token id from `logits` (penalised in place), given all previous tokens (prompt + generated).
    pub fn sample(&mut self, logits: &mut [f32], previous: &[i64]) -> usize {
        let probs = logits_to_probs(logits, previous, &self.params);
        match self.strategy() {
            Strategy::Greedy => argmax(&probs),
            Strategy::Random => {
                let mut best = 0;
                let mut bv = f32::NEG_INFINITY;
                for (i, &pi) in probs.iter().enumerate() {
                    // q ~ Exp(1) = -ln(U), U in (0, 1]
                    let u: f64 = 1.0 - self.rng.random::<f64>();
                    let q = -(u.ln()) as f32;
                    let r = if q > 0.0 { pi / q } else if pi > 0.0 { f32::INFINITY } else { 0.0 };
                    if r > bv {
                        bv = r;
                        best = i;
                    }
                }
                best
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_distinct_and_signed() {
        let mut l = vec![2.0, -2.0, 1.0, 0.5];
        apply_repetition_penalty(&mut l, &[0, 0, 1, 1, 7, -1], 2.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0, 0.5]);
        let mut l2 = vec![2.0, -2.0];
        apply_repetition_penalty(&mut l2, &[0, 1], 1.0);
        assert_eq!(l2, vec![2.0, -2.0]);
    }

    #[test]
    fn greedy_after_penalty() {
        // token 0 leads, but after ÷1.35 token 1 wins
        let p = SamplingParams { top_k: 1, top_p: 1.0, temperature: 1.0, repetition_penalty: 1.35 };
        let mut s = Sampler::new(p, 0);
        let mut l = vec![1.3, 1.0, -5.0];
        assert_eq!(s.sample(&mut l, &[0]), 1);
        assert!((l[0] - 1.3 / 1.35).abs() < 1e-7);
    }

    #[test]
    fn top_k_keeps_ties_and_masks_rest() {
        let p = SamplingParams { top_k: 2, top_p: 1.0, temperature: 1.0, repetition_penalty: 1.0 };
        let mut l = vec![3.0, 1.0, 3.0, 2.0];
        let pr = logits_to_probs(&mut l, &[], &p);
        assert_eq!(pr[1], 0.0);
        assert_eq!(pr[3], 0.0);
        assert!((pr[0] - 0.5).abs() < 1e-6 && (pr[2] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn top_p_rule_keeps_first_and_drops_crossing_token() {
        // probs of [ln 0.5, ln 0.3, ln 0.2] = 0.5, 0.3, 0.2; cum = 0.5, 0.8, 1.0
        let l0 = vec![0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let p = SamplingParams { top_k: 0, top_p: 0.6, temperature: 1.0, repetition_penalty: 1.0 };
        let pr = logits_to_probs(&mut l0.clone(), &[], &p);
        // 0.8 > 0.6 -> token 1 removed (upstream removes the crossing token itself)
        assert!((pr[0] - 1.0).abs() < 1e-6 && pr[1] == 0.0 && pr[2] == 0.0);
        let p2 = SamplingParams { top_p: 0.1, ..p };
        let pr2 = logits_to_probs(&mut l0.clone(), &[], &p2);
        assert!((pr2[0] - 1.0).abs() < 1e-6); // first always kept
        let p3 = SamplingParams { top_p: 0.85, ..p };
        let pr3 = logits_to_probs(&mut l0.clone(), &[], &p3);
        assert!((pr3[0] - 0.625).abs() < 1e-5 && (pr3[1] - 0.375).abs() < 1e-5 && pr3[2] == 0.0);
    }

    #[test]
    fn temperature_floor() {
        let p = SamplingParams { top_k: 0, top_p: 1.0, temperature: 0.0, repetition_penalty: 1.0 };
        let pr = logits_to_probs(&mut [1.0, 1.0001], &[], &p);
        assert!(pr[1] > 0.99);
    }

    #[test]
    fn seeded_draw_is_reproducible_and_follows_distribution() {
        let p = SamplingParams { top_k: 0, top_p: 1.0, temperature: 1.0, repetition_penalty: 1.0 };
        let l = vec![0.7f32.ln(), 0.2f32.ln(), 0.1f32.ln()];
        let draw = |seed| {
            let mut s = Sampler::new(p, seed);
            (0..4000).map(|_| s.sample(&mut l.clone(), &[])).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let f0 = a.iter().filter(|&&t| t == 0).count() as f32 / 4000.0;
        let f2 = a.iter().filter(|&&t| t == 2).count() as f32 / 4000.0;
        assert!((f0 - 0.7).abs() < 0.03, "{f0}");
        assert!((f2 - 0.1).abs() < 0.02, "{f2}");
    }

    #[test]
    fn argmax_first_max() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }
}
