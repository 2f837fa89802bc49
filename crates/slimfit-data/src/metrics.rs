//! Task metrics: accuracy, F1, Matthews correlation, Pearson and Spearman correlation.
//!
//! Computed in `f64`. Degenerate inputs (no positives predicted, constant series) give 0,
//! as scikit-learn and SciPy conventions do for F1 and MCC.

/// Fraction of `predicted[i] == gold[i]`.
pub fn accuracy(predicted: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(predicted.len(), gold.len(), "one prediction per example");
    if gold.is_empty() {
        return 0.0;
    }
    let hits = predicted.iter().zip(gold).filter(|(p, g)| p == g).count();
    hits as f64 / gold.len() as f64
}

fn confusion(predicted: &[usize], gold: &[usize]) -> (f64, f64, f64, f64) {
    assert_eq!(predicted.len(), gold.len(), "one prediction per example");
    let (mut tp, mut tn, mut fp, mut fneg) = (0.0, 0.0, 0.0, 0.0);
    for (&p, &g) in predicted.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1.0,
            (false, false) => tn += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
        }
    }
    (tp, tn, fp, fneg)
}

/// F1 of class 1: `2·TP / (2·TP + FP + FN)`.
pub fn f1(predicted: &[usize], gold: &[usize]) -> f64 {
    let (tp, _, fp, fneg) = confusion(predicted, gold);
    let denominator = 2.0 * tp + fp + fneg;
    if denominator == 0.0 {
        0.0
    } else {
        2.0 * tp / denominator
    }
}

/// Matthews correlation coefficient of a binary task.
pub fn matthews(predicted: &[usize], gold: &[usize]) -> f64 {
    let (tp, tn, fp, fneg) = confusion(predicted, gold);
    let denominator = ((tp + fp) * (tp + fneg) * (tn + fp) * (tn + fneg)).sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        (tp * tn - fp * fneg) / denominator
    }
}

/// Pearson correlation.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "paired series");
    let n = x.len() as f64;
    if x.is_empty() {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks starting at 1, ties sharing their average rank (as SciPy's `rankdata`).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = average;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman rank correlation (Pearson of tie-averaged ranks).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn binary_metrics_on_a_known_confusion_matrix() {
        // TP = 3, TN = 2, FP = 1, FN = 2.
        let gold = [1, 1, 1, 1, 1, 0, 0, 0];
        let pred = [1, 1, 1, 0, 0, 1, 0, 0];
        assert!(close(accuracy(&pred, &gold), 5.0 / 8.0));
        assert!(close(f1(&pred, &gold), 6.0 / 9.0));
        // (3·2 − 1·2) / sqrt(4·5·3·4) = 4 / sqrt(240)
        assert!(close(matthews(&pred, &gold), 4.0 / 240f64.sqrt()));
    }

    #[test]
    fn degenerate_cases_are_zero_not_nan() {
        assert_eq!(matthews(&[1, 1, 1], &[1, 0, 1]), 0.0);
        assert_eq!(f1(&[0, 0], &[0, 0]), 0.0);
        assert_eq!(pearson(&[1.0, 1.0], &[0.0, 2.0]), 0.0);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn perfect_and_inverse_predictions() {
        assert!(close(matthews(&[1, 0, 1, 0], &[1, 0, 1, 0]), 1.0));
        assert!(close(matthews(&[0, 1, 0, 1], &[1, 0, 1, 0]), -1.0));
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0));
    }

    #[test]
    fn pearson_and_spearman_known_values() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 1.0, 4.0, 3.0, 5.0];
        // Σdxdy = 8, Σdx² = Σdy² = 10.
        assert!(close(pearson(&x, &y), 0.8));
        assert!(close(spearman(&x, &y), 0.8));
        // Monotone but not linear: Spearman 1, Pearson < 1.
        let cubes: Vec<f64> = x.iter().map(|v| v * v * v).collect();
        assert!(close(spearman(&x, &cubes), 1.0));
        assert!(pearson(&x, &cubes) < 0.99);
    }

    #[test]
    fn spearman_averages_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // SciPy: spearmanr([1, 2, 2, 3], [1, 3, 2, 4]).statistic = 0.9486832980505138
        let s = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((s - 0.948_683_298_050_513_8).abs() < 1e-12, "{s}");
    }
}
