//! The compact binary form of a snapshot's metrics, so that a snapshot item stays under 1 KB (one
//! DynamoDB write unit) for a typical server.
//!
//! What makes it small: numbers that are whole (counters, bucket counts) are varints; histogram bucket
//! bounds are not stored in the snapshot but in an immutable layout item named by the bounds' hash
//! (a server's layouts never change between scrapes, so they are written once); bucket counts are
//! stored as per-bucket deltas of the cumulative counts (small varints), not as cumulative values.
//!
//! Format v1: `u8 version`, `varint models`, then per model: `str model`, `u8 entries`, per entry
//! `u8 canonical index` and a number or a histogram (`u64 layout hash`, `num count`, `num sum`,
//! `varint buckets`, `num delta` per bucket). `num` = tag 0 + varint (whole, 0 ≤ v < 2^53) or tag 1 +
//! f64 little-endian. `str` = varint length + UTF-8.

use crate::snapshot::{Canonical, CanonicalKind, Histogram, MetricValue, ModelMetrics};
use std::collections::BTreeMap;

const VERSION: u8 = 1;
const MAX_MODELS: u64 = 256;
const MAX_BUCKETS: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt snapshot blob: {0}")]
pub struct CodecError(pub String);

/// A histogram bucket layout: its upper bounds, named by a stable hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub hash: u64,
    pub bounds: Vec<f64>,
}

impl Layout {
    pub fn of(bounds: Vec<f64>) -> Self {
        Layout {
            hash: layout_hash(&bounds),
            bounds,
        }
    }
}

/// FNV-1a over the bounds' bit patterns: stable across builds and platforms (unlike `DefaultHasher`).
pub fn layout_hash(bounds: &[f64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bounds {
        for byte in b.to_bits().to_le_bytes() {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Encodes models; returns the blob and the layouts it references.
pub fn encode(models: &[ModelMetrics]) -> (Vec<u8>, Vec<Layout>) {
    let mut out = Vec::with_capacity(512);
    let mut layouts: Vec<Layout> = Vec::new();
    out.push(VERSION);
    put_varint(&mut out, models.len() as u64);
    for m in models {
        put_str(&mut out, &m.model);
        out.push(m.metrics.len().min(u8::MAX as usize) as u8);
        for (c, v) in m.metrics.iter().take(u8::MAX as usize) {
            out.push(canonical_index(*c));
            match v {
                MetricValue::Number(x) => put_num(&mut out, *x),
                MetricValue::Histogram(h) => {
                    let layout = Layout::of(h.buckets.iter().map(|b| b.0).collect());
                    out.extend_from_slice(&layout.hash.to_le_bytes());
                    put_num(&mut out, h.count);
                    put_num(&mut out, h.sum);
                    put_varint(&mut out, h.buckets.len() as u64);
                    let mut prev = 0.0;
                    for &(_, c) in &h.buckets {
                        put_num(&mut out, c - prev);
                        prev = c;
                    }
                    if !layouts.iter().any(|l| l.hash == layout.hash) {
                        layouts.push(layout);
                    }
                }
            }
        }
    }
    (out, layouts)
}

/// The layout hashes a blob references, so a reader can fetch them before decoding.
pub fn referenced_layouts(blob: &[u8]) -> Result<Vec<u64>, CodecError> {
    let mut hashes = Vec::new();
    walk(blob, &mut |_, _, v| {
        if let Raw::Histogram { hash, .. } = v {
            if !hashes.contains(&hash) {
                hashes.push(hash);
            }
        }
        Ok(())
    })?;
    Ok(hashes)
}

/// Decodes a blob, resolving bucket bounds through `layouts`.
pub fn decode(
    blob: &[u8],
    layouts: &dyn Fn(u64) -> Option<Vec<f64>>,
) -> Result<Vec<ModelMetrics>, CodecError> {
    let mut models: Vec<ModelMetrics> = Vec::new();
    walk(blob, &mut |model, c, v| {
        if models.last().is_none_or(|m| m.model != model) {
            models.push(ModelMetrics {
                model: model.to_string(),
                metrics: BTreeMap::new(),
            });
        }
        let value = match v {
            Raw::Number(x) => MetricValue::Number(x),
            Raw::Histogram {
                hash,
                count,
                sum,
                deltas,
            } => {
                let bounds = layouts(hash)
                    .ok_or_else(|| CodecError(format!("unknown bucket layout {hash:016x}")))?;
                if bounds.len() != deltas.len() {
                    return Err(CodecError(format!(
                        "layout {hash:016x} has {} bounds, blob {} buckets",
                        bounds.len(),
                        deltas.len()
                    )));
                }
                let mut cum = 0.0;
                let buckets = bounds
                    .into_iter()
                    .zip(deltas)
                    .map(|(le, d)| {
                        cum += d;
                        (le, cum)
                    })
                    .collect();
                MetricValue::Histogram(Histogram {
                    count,
                    sum,
                    buckets,
                })
            }
        };
        if let Some(m) = models.last_mut() {
            m.metrics.insert(c, value);
        }
        Ok(())
    })?;
    Ok(models)
}

/// Models with no metrics still exist (a server that exported nothing we map); `walk` only reports
/// entries, so decode misses them — acceptable, an empty model carries no information to analyze.
enum Raw {
    Number(f64),
    Histogram {
        hash: u64,
        count: f64,
        sum: f64,
        deltas: Vec<f64>,
    },
}

fn walk(
    blob: &[u8],
    f: &mut dyn FnMut(&str, Canonical, Raw) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut r = Reader { buf: blob, pos: 0 };
    let version = r.byte()?;
    if version != VERSION {
        return Err(CodecError(format!("unsupported version {version}")));
    }
    let n_models = r.varint()?;
    if n_models > MAX_MODELS {
        return Err(CodecError(format!("{n_models} models")));
    }
    for _ in 0..n_models {
        let model = r.str()?;
        let entries = r.byte()?;
        for _ in 0..entries {
            let c = canonical_from_index(r.byte()?)?;
            let raw = match c.kind() {
                CanonicalKind::Gauge | CanonicalKind::Counter => Raw::Number(r.num()?),
                CanonicalKind::Histogram => {
                    let hash = u64::from_le_bytes(r.array()?);
                    let count = r.num()?;
                    let sum = r.num()?;
                    let n = r.varint()?;
                    if n > MAX_BUCKETS {
                        return Err(CodecError(format!("{n} buckets")));
                    }
                    let deltas = (0..n).map(|_| r.num()).collect::<Result<Vec<_>, _>>()?;
                    Raw::Histogram {
                        hash,
                        count,
                        sum,
                        deltas,
                    }
                }
            };
            f(model, c, raw)?;
        }
    }
    if r.pos != blob.len() {
        return Err(CodecError("trailing bytes".into()));
    }
    Ok(())
}

fn canonical_index(c: Canonical) -> u8 {
    Canonical::ALL.iter().position(|&x| x == c).unwrap_or(0) as u8
}

fn canonical_from_index(i: u8) -> Result<Canonical, CodecError> {
    Canonical::ALL
        .get(i as usize)
        .copied()
        .ok_or_else(|| CodecError(format!("unknown metric index {i}")))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_num(out: &mut Vec<u8>, x: f64) {
    const WHOLE_MAX: f64 = (1u64 << 53) as f64;
    if (0.0..WHOLE_MAX).contains(&x) && x.fract() == 0.0 && !(x == 0.0 && x.is_sign_negative()) {
        out.push(0);
        put_varint(out, x as u64);
    } else {
        out.push(1);
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| CodecError("truncated".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| CodecError("truncated".into()))?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(a)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError("varint too long".into()))
    }

    fn num(&mut self) -> Result<f64, CodecError> {
        match self.byte()? {
            0 => Ok(self.varint()? as f64),
            1 => Ok(f64::from_le_bytes(self.array()?)),
            t => Err(CodecError(format!("unknown number tag {t}"))),
        }
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| CodecError("truncated string".into()))?;
        let s = std::str::from_utf8(&self.buf[self.pos..end])
            .map_err(|_| CodecError("model name is not UTF-8".into()))?;
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<ModelMetrics> {
        let mut metrics = BTreeMap::new();
        metrics.insert(Canonical::RequestsRunning, MetricValue::Number(12.0));
        metrics.insert(Canonical::KvCacheUsageRatio, MetricValue::Number(0.8134));
        metrics.insert(
            Canonical::GenerationTokensTotal,
            MetricValue::Number(9.87e9),
        );
        let bounds: Vec<f64> = [
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
        ]
        .into_iter()
        .chain([f64::INFINITY])
        .collect();
        let mut cum = 0.0;
        let buckets = bounds
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                cum += (i * 37 % 11) as f64 * 1000.0;
                (b, cum)
            })
            .collect::<Vec<_>>();
        for c in [
            Canonical::TtftSeconds,
            Canonical::InterTokenLatencySeconds,
            Canonical::E2eLatencySeconds,
            Canonical::QueueTimeSeconds,
        ] {
            metrics.insert(
                c,
                MetricValue::Histogram(Histogram {
                    count: cum,
                    sum: 1234.5678,
                    buckets: buckets.clone(),
                }),
            );
        }
        vec![ModelMetrics {
            model: "meta-llama/Llama-3.1-8B-Instruct".into(),
            metrics,
        }]
    }

    fn lookup(layouts: &[Layout]) -> impl Fn(u64) -> Option<Vec<f64>> + '_ {
        move |h| {
            layouts
                .iter()
                .find(|l| l.hash == h)
                .map(|l| l.bounds.clone())
        }
    }

    #[test]
    fn a_typical_vllm_snapshot_fits_well_under_one_write_unit() {
        let (blob, layouts) = encode(&sample());
        assert!(blob.len() < 600, "{} bytes", blob.len());
        assert_eq!(layouts.len(), 1, "four histograms share one layout");
        assert_eq!(decode(&blob, &lookup(&layouts)).unwrap(), sample());
    }

    #[test]
    fn an_unknown_layout_is_an_error_not_a_guess() {
        let (blob, _) = encode(&sample());
        assert!(decode(&blob, &|_| None).is_err());
    }

    #[test]
    fn truncated_or_garbage_blobs_are_errors() {
        let (blob, layouts) = encode(&sample());
        for n in 0..blob.len() {
            assert!(decode(&blob[..n], &lookup(&layouts)).is_err(), "prefix {n}");
        }
        assert!(decode(&[9, 9, 9], &lookup(&layouts)).is_err());
    }

    proptest! {
        #[test]
        fn numbers_round_trip_bit_for_bit(x in any::<f64>()) {
            let m = vec![ModelMetrics {
                model: "m".into(),
                metrics: [(Canonical::RequestsWaiting, MetricValue::Number(x))].into_iter().collect(),
            }];
            let (blob, _) = encode(&m);
            let back = decode(&blob, &|_| None).unwrap();
            let y = back[0].number(Canonical::RequestsWaiting).unwrap();
            prop_assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes, &|_| Some(vec![1.0]));
        }
    }
}
