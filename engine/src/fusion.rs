//! Fusing the dense and keyword rankings: reciprocal rank fusion (RRF, configurable `k` and
//! per-leg weights) and distribution-based score fusion (DBSF: each leg's scores normalised by
//! their mean ± 3 standard deviations, then a weighted sum). A fused score orders one result
//! list; it is not an absolute relevance measure.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// How the legs' rankings are combined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fusion {
    /// RRF or DBSF.
    pub method: FusionMethod,
    /// RRF's `k`: larger flattens the advantage of top ranks.
    pub k: f32,
    /// Weight of the dense leg.
    pub dense_weight: f32,
    /// Weight of the keyword leg.
    pub keyword_weight: f32,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion {
            method: FusionMethod::Rrf,
            k: 60.0,
            dense_weight: 1.0,
            keyword_weight: 1.0,
        }
    }
}

/// The fusion formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    /// Reciprocal rank fusion: `Σ weight / (k + rank)`.
    #[default]
    Rrf,
    /// Distribution-based score fusion.
    Dbsf,
}

impl Fusion {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.k.is_finite() && self.k >= 0.0) {
            return Err(format!(
                "fusion k must be a non-negative number, got {}",
                self.k
            ));
        }
        for (name, w) in [
            ("dense_weight", self.dense_weight),
            ("keyword_weight", self.keyword_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(format!(
                    "fusion {name} must be a non-negative number, got {w}"
                ));
            }
        }
        if self.dense_weight == 0.0 && self.keyword_weight == 0.0 {
            return Err("fusion weights are both zero".to_owned());
        }
        Ok(())
    }
}

/// One document's place in one leg.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LegRank {
    /// 1-based rank in the leg.
    pub rank: usize,
    /// The leg's own score (cosine similarity or BM25).
    pub score: f32,
}

/// A fused result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fused<K> {
    pub key: K,
    pub score: f32,
    pub dense: Option<LegRank>,
    pub keyword: Option<LegRank>,
}

/// Fuses two ranked lists (best first) of distinct keys.
pub(crate) fn fuse<K: Clone + Eq + std::hash::Hash>(
    fusion: &Fusion,
    dense: &[(K, f32)],
    keyword: &[(K, f32)],
) -> Vec<Fused<K>> {
    let mut out: Vec<Fused<K>> = Vec::new();
    let mut at: HashMap<K, usize> = HashMap::new();
    let dense_norm = normaliser(fusion.method, dense);
    let keyword_norm = normaliser(fusion.method, keyword);
    for (is_dense, list, weight, norm) in [
        (true, dense, fusion.dense_weight, dense_norm),
        (false, keyword, fusion.keyword_weight, keyword_norm),
    ] {
        for (i, (key, score)) in list.iter().enumerate() {
            let rank = i + 1;
            let contribution = match fusion.method {
                FusionMethod::Rrf => weight / (fusion.k + rank as f32),
                FusionMethod::Dbsf => weight * norm.apply(*score),
            };
            let slot = *at.entry(key.clone()).or_insert_with(|| {
                out.push(Fused {
                    key: key.clone(),
                    score: 0.0,
                    dense: None,
                    keyword: None,
                });
                out.len() - 1
            });
            let entry = &mut out[slot];
            entry.score += contribution;
            let leg = Some(LegRank {
                rank,
                score: *score,
            });
            if is_dense {
                entry.dense = leg
            } else {
                entry.keyword = leg
            }
        }
    }
    // Ties keep the better best rank, then dense first: stable and deterministic.
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| best_rank(a).cmp(&best_rank(b)))
    });
    out
}

fn best_rank<K>(f: &Fused<K>) -> usize {
    f.dense
        .map_or(usize::MAX, |r| r.rank)
        .min(f.keyword.map_or(usize::MAX, |r| r.rank))
}

#[derive(Debug, Clone, Copy)]
struct Normaliser {
    lower: f32,
    upper: f32,
}

impl Normaliser {
    fn apply(&self, score: f32) -> f32 {
        if self.upper > self.lower {
            ((score - self.lower) / (self.upper - self.lower)).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

/// DBSF's bounds: mean ± 3 standard deviations of the leg's scores.
fn normaliser<K>(method: FusionMethod, list: &[(K, f32)]) -> Normaliser {
    if method != FusionMethod::Dbsf || list.is_empty() {
        return Normaliser {
            lower: 0.0,
            upper: 0.0,
        };
    }
    let n = list.len() as f32;
    let mean = list.iter().map(|(_, s)| s).sum::<f32>() / n;
    let var = list
        .iter()
        .map(|(_, s)| (s - mean) * (s - mean))
        .sum::<f32>()
        / n;
    let sd = var.sqrt();
    Normaliser {
        lower: mean - 3.0 * sd,
        upper: mean + 3.0 * sd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_rewards_documents_both_legs_agree_on() {
        let dense = [("a", 0.9), ("b", 0.8), ("c", 0.7)];
        let keyword = [("c", 12.0), ("d", 8.0)];
        let fused = fuse(&Fusion::default(), &dense, &keyword);
        assert_eq!(fused[0].key, "c");
        assert!((fused[0].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-6);
        assert_eq!(
            fused[0].dense,
            Some(LegRank {
                rank: 3,
                score: 0.7
            })
        );
        assert_eq!(
            fused[0].keyword,
            Some(LegRank {
                rank: 1,
                score: 12.0
            })
        );
        assert_eq!(fused.len(), 4);
    }

    #[test]
    fn weights_can_silence_a_leg() {
        let dense = [("a", 0.9)];
        let keyword = [("b", 5.0)];
        let f = Fusion {
            keyword_weight: 0.0,
            ..Fusion::default()
        };
        let fused = fuse(&f, &dense, &keyword);
        assert_eq!(fused[0].key, "a");
        assert_eq!(fused[1].score, 0.0);
    }

    #[test]
    fn dbsf_normalises_each_leg_before_adding() {
        let dense = [("a", 0.90), ("b", 0.50), ("c", 0.49)];
        let keyword = [("b", 30.0), ("a", 1.0), ("c", 0.5)];
        let f = Fusion {
            method: FusionMethod::Dbsf,
            ..Fusion::default()
        };
        let fused = fuse(&f, &dense, &keyword);
        // BM25's large raw scale does not swamp the cosine leg: each is within [0, 1].
        assert!(fused.iter().all(|r| (0.0..=2.0).contains(&r.score)));
        assert_eq!(fused[0].key, "b");
    }

    #[test]
    fn invalid_fusion_settings_are_refused() {
        assert!(
            Fusion {
                k: -1.0,
                ..Fusion::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Fusion {
                dense_weight: 0.0,
                keyword_weight: 0.0,
                ..Fusion::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Fusion {
                dense_weight: f32::NAN,
                ..Fusion::default()
            }
            .validate()
            .is_err()
        );
    }
}
