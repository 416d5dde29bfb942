//! Retrieval quality measures as BEIR reports them (pytrec_eval's definitions): nDCG@k with the
//! grade as gain and log2(rank + 1) discount, recall@k, and MRR@k (reciprocal rank of the first
//! relevant document within the top k, 0 when none is).

use std::collections::HashMap;

/// nDCG@k of a ranking against graded judgements (document → grade > 0).
pub fn ndcg_at(k: usize, ranking: &[String], judged: &HashMap<String, u32>) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| f64::from(judged.get(d).copied().unwrap_or(0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<u32> = judged.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| f64::from(*g) / (i as f64 + 2.0).log2())
        .sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

/// recall@k: the share of the relevant documents found in the top k.
pub fn recall_at(k: usize, ranking: &[String], judged: &HashMap<String, u32>) -> f64 {
    if judged.is_empty() {
        return 0.0;
    }
    let found = ranking
        .iter()
        .take(k)
        .filter(|d| judged.contains_key(*d))
        .count();
    found as f64 / judged.len() as f64
}

/// MRR@k's term for one query.
pub fn reciprocal_rank_at(k: usize, ranking: &[String], judged: &HashMap<String, u32>) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|d| judged.contains_key(d))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(d, g)| ((*d).to_owned(), *g)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn one_relevant_document_scores_by_its_rank() {
        let j = judged(&[("d", 1)]);
        assert!((ndcg_at(10, &ranking(&["d", "x"]), &j) - 1.0).abs() < 1e-12);
        // At rank 3: 1 / log2(4) = 0.5.
        assert!((ndcg_at(10, &ranking(&["x", "y", "d"]), &j) - 0.5).abs() < 1e-12);
        assert!((reciprocal_rank_at(10, &ranking(&["x", "y", "d"]), &j) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ndcg_at(2, &ranking(&["x", "y", "d"]), &j), 0.0);
        assert_eq!(reciprocal_rank_at(2, &ranking(&["x", "y", "d"]), &j), 0.0);
    }

    #[test]
    fn graded_judgements_reward_the_better_document_first() {
        let j = judged(&[("a", 2), ("b", 1)]);
        let ideal = ndcg_at(10, &ranking(&["a", "b"]), &j);
        let swapped = ndcg_at(10, &ranking(&["b", "a"]), &j);
        assert!((ideal - 1.0).abs() < 1e-12);
        // (1 + 2/log2 3) / (2 + 1/log2 3)
        let want = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((swapped - want).abs() < 1e-12, "{swapped} vs {want}");
    }

    #[test]
    fn recall_counts_relevant_documents_within_the_cutoff() {
        let j = judged(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let r = ranking(&["a", "x", "b", "c"]);
        assert!((recall_at(100, &r, &j) - 0.75).abs() < 1e-12);
        assert!((recall_at(2, &r, &j) - 0.25).abs() < 1e-12);
        assert_eq!(recall_at(10, &r, &HashMap::new()), 0.0);
    }
}
