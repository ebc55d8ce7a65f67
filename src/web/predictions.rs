//! The run page's predictions panel: the confusion matrix (an HTML table,
//! cells shaded by their share of the row), per-class precision and recall,
//! and the likely label errors of one split's latest `predictions` record,
//! as analysed by `diagnostics::predictions` (which `label_errors` and
//! `class_not_predicted` come from). Pure view-model building; the loading
//! is in `views::views`.

use crate::charts::svg::format_value;
use crate::diagnostics::fmt_step;
use crate::diagnostics::predictions::{
    Analysis, ClassStats, LABEL_PROB_MAX, OTHER_PROB_MIN, id_text,
};

/// Classes of the confusion matrix at most (the most labelled ones): a
/// 20 × 20 table still fits a laptop screen.
pub const MATRIX_CLASSES: usize = 20;
/// Rows of the per-class table at most.
const CLASS_ROWS: usize = 100;
/// Suspects listed at most (the API has them all).
pub const SUSPECT_ROWS: usize = 50;

/// The predictions panel; empty (`splits` empty) without predictions.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PredictionsPanel {
    /// Every split with predictions, with a link to show it.
    pub splits: Vec<super::views::KeyLink>,
    pub split: String,
    pub step: String,
    pub facts: Vec<(String, String)>,
    /// Column (predicted) classes of the matrix, as text.
    pub columns: Vec<String>,
    pub rows: Vec<MatrixRow>,
    /// Why the matrix leaves classes out, if it does.
    pub matrix_note: Option<String>,
    pub classes: Vec<ClassRow>,
    pub more_classes: usize,
    pub suspects: Vec<SuspectRow>,
    pub more_suspects: usize,
    /// The API's analysis of this split (JSON, every suspect).
    pub api_href: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MatrixRow {
    pub class: String,
    pub support: u64,
    pub cells: Vec<Cell>,
}

/// One cell: the count, its share of the row and the shading.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub count: u64,
    /// "12 of 200 (6%) labelled 3 predicted 5".
    pub title: String,
    /// `background` of the cell (a colour with an alpha from the row share).
    pub style: String,
    /// Dark enough for white text.
    pub dark: bool,
    pub diagonal: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassRow {
    pub class: String,
    pub support: u64,
    pub predicted: u64,
    pub precision: String,
    pub recall: String,
    pub threshold: String,
    /// Labelled ≥ a few times and never predicted, or recall below 0.5.
    pub bad: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SuspectRow {
    pub id: String,
    pub label: String,
    pub predicted: String,
    pub confidence: String,
    pub label_prob: String,
    pub confident: bool,
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", v * 100.0))
}

fn prob(v: f64) -> String {
    format!("{v:.3}")
}

/// The panel for `a`, the analysis of the split chosen among `splits`
/// (links already made).
pub fn panel(
    a: &Analysis,
    splits: Vec<super::views::KeyLink>,
    api_href: String,
) -> PredictionsPanel {
    let suspects_confident = a.suspects.iter().filter(|s| s.confident).count();
    let mut facts = vec![
        ("samples".to_string(), a.n.to_string()),
        (
            "classes".to_string(),
            format!(
                "{}{}",
                a.num_classes,
                if a.top_k {
                    " (top-k probabilities: unlisted ones at their upper bound)"
                } else {
                    ""
                }
            ),
        ),
        ("accuracy".to_string(), pct(Some(a.accuracy))),
        (
            "label errors (confident learning)".to_string(),
            format!("{} ({})", pct(Some(a.label_error_share)), a.suspects.len()),
        ),
        (
            "confident suspects".to_string(),
            format!(
                "{} ({}; label ≤ {}, another class ≥ {})",
                pct(Some(a.confident_share)),
                suspects_confident,
                LABEL_PROB_MAX,
                OTHER_PROB_MIN
            ),
        ),
    ];
    facts.push((
        "accuracy off the confident suspects".to_string(),
        pct(Some(a.clean_accuracy)),
    ));

    // The matrix's classes: the most labelled (then predicted) ones, by index.
    let mut shown: Vec<&ClassStats> = a.classes.iter().collect();
    shown.sort_by(|x, y| {
        (y.support, y.predicted)
            .cmp(&(x.support, x.predicted))
            .then(x.class.cmp(&y.class))
    });
    shown.truncate(MATRIX_CLASSES);
    shown.sort_by_key(|c| c.class);
    let index: Vec<u32> = shown.iter().map(|c| c.class).collect();
    let count = |l: u32, p: u32| {
        a.confusion
            .binary_search_by(|(x, y, _)| (*x, *y).cmp(&(l, p)))
            .map_or(0, |i| a.confusion[i].2)
    };
    let rows = shown
        .iter()
        .filter(|c| c.support > 0)
        .map(|c| MatrixRow {
            class: c.class.to_string(),
            support: c.support,
            cells: index
                .iter()
                .map(|&p| {
                    let k = count(c.class, p);
                    let share = k as f64 / c.support as f64;
                    let diagonal = p == c.class;
                    // Blue on the diagonal (right), red off it (mistakes or
                    // wrong labels); the alpha is the row share.
                    let rgb = if diagonal { "43,108,176" } else { "201,52,38" };
                    let alpha = if k == 0 { 0.0 } else { 0.08 + 0.92 * share };
                    Cell {
                        count: k,
                        title: format!(
                            "{k} of {} ({}) labelled {} predicted {p}",
                            c.support,
                            pct(Some(share)),
                            c.class
                        ),
                        style: format!("background: rgba({rgb},{alpha:.2})"),
                        dark: alpha > 0.55,
                        diagonal,
                    }
                })
                .collect(),
        })
        .collect();
    let hidden = a.classes.len().saturating_sub(index.len());
    let matrix_note = (hidden > 0).then(|| {
        format!(
            "The {} most labelled of {} classes; the others' counts are in the table below and the API.",
            index.len(),
            a.classes.len()
        )
    });
    let bad_class =
        |c: &ClassStats| c.support > 0 && (c.predicted == 0 || c.recall.is_some_and(|r| r < 0.5));
    let classes = a
        .classes
        .iter()
        .take(CLASS_ROWS)
        .map(|c| ClassRow {
            class: c.class.to_string(),
            support: c.support,
            predicted: c.predicted,
            precision: pct(c.precision),
            recall: pct(c.recall),
            threshold: c.threshold.map_or_else(|| "–".into(), format_value),
            bad: bad_class(c),
        })
        .collect();
    let suspects = a
        .suspects
        .iter()
        .take(SUSPECT_ROWS)
        .map(|s| SuspectRow {
            id: id_text(&s.id),
            label: s.label.to_string(),
            predicted: s.predicted.to_string(),
            confidence: prob(s.confidence),
            label_prob: format!(
                "{}{}",
                if s.label_prob_bound { "≤ " } else { "" },
                prob(s.label_prob)
            ),
            confident: s.confident,
        })
        .collect();
    PredictionsPanel {
        splits,
        split: a.split.clone(),
        step: fmt_step(a.step),
        facts,
        columns: index.iter().map(u32::to_string).collect(),
        rows,
        matrix_note,
        classes,
        more_classes: a.classes.len().saturating_sub(CLASS_ROWS),
        suspects,
        more_suspects: a.suspects.len().saturating_sub(SUSPECT_ROWS),
        api_href,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::predictions::analyse;
    use crate::record::{PredictionsRecord, Value};

    fn record() -> PredictionsRecord {
        // Class 0: 4 samples, one labelled 0 that looks like 1 for sure;
        // class 1: 4 samples, all right; class 2: 2 samples predicted 1.
        let rows = [
            (0, [0.9, 0.05, 0.05]),
            (0, [0.9, 0.05, 0.05]),
            (0, [0.9, 0.05, 0.05]),
            (0, [0.02, 0.96, 0.02]),
            (1, [0.05, 0.9, 0.05]),
            (1, [0.05, 0.9, 0.05]),
            (1, [0.05, 0.9, 0.05]),
            (1, [0.05, 0.9, 0.05]),
            (2, [0.1, 0.5, 0.4]),
            (2, [0.1, 0.5, 0.4]),
        ];
        PredictionsRecord {
            step: 1200,
            split: "val".into(),
            labels: rows.iter().map(|r| r.0).collect(),
            probs: rows
                .iter()
                .map(|r| r.1.iter().map(|v| Value(*v)).collect())
                .collect(),
            classes: None,
            num_classes: None,
            ids: Some(
                (0..10)
                    .map(|i| serde_json::json!(format!("img-{i}")))
                    .collect(),
            ),
            time: None,
        }
    }

    #[test]
    fn matrix_counts_shares_and_suspects() {
        let a = analyse(&record());
        let p = panel(&a, Vec::new(), "/x".into());
        assert_eq!(p.step, "1,200");
        assert_eq!(p.columns, vec!["0", "1", "2"]);
        let counts: Vec<Vec<u64>> = p
            .rows
            .iter()
            .map(|r| r.cells.iter().map(|c| c.count).collect())
            .collect();
        assert_eq!(counts, vec![vec![3, 1, 0], vec![0, 4, 0], vec![0, 2, 0]]);
        let c = &p.rows[0].cells[1];
        assert_eq!(c.title, "1 of 4 (25.0%) labelled 0 predicted 1");
        assert!(!c.diagonal && c.style.starts_with("background: rgba(201,52,38,"));
        assert!(p.rows[1].cells[1].dark && p.rows[1].cells[1].diagonal);
        assert_eq!(p.rows[0].cells[2].style, "background: rgba(201,52,38,0.00)");
        // Class 2 is never predicted: flagged in the table.
        assert!(p.classes[2].bad && !p.classes[1].bad);
        assert_eq!(p.classes[0].precision, "100.0%");
        assert_eq!(p.classes[0].recall, "75.0%");
        assert_eq!(p.suspects.len(), 1);
        let s = &p.suspects[0];
        assert_eq!(
            (s.id.as_str(), s.label.as_str(), s.predicted.as_str()),
            ("img-3", "0", "1")
        );
        assert_eq!(
            (s.confidence.as_str(), s.label_prob.as_str()),
            ("0.960", "0.020")
        );
        assert!(s.confident);
        assert!(p.matrix_note.is_none());
    }

    #[test]
    fn many_classes_show_the_most_labelled_ones() {
        let n = 30u32;
        let labels: Vec<u32> = (0..n)
            .flat_map(|c| std::iter::repeat_n(c, (c + 1) as usize))
            .collect();
        let probs = labels
            .iter()
            .map(|&l| {
                (0..n)
                    .map(|c| Value(if c == l { 0.71 } else { 0.01 }))
                    .collect()
            })
            .collect();
        let rec = PredictionsRecord {
            labels,
            probs,
            ids: None,
            ..record()
        };
        let p = panel(&analyse(&rec), Vec::new(), String::new());
        assert_eq!(p.columns.len(), MATRIX_CLASSES);
        assert_eq!(p.columns[0], "10");
        assert_eq!(p.rows.len(), MATRIX_CLASSES);
        assert!(
            p.matrix_note
                .as_deref()
                .unwrap()
                .contains("20 most labelled of 30")
        );
    }
}
