//! The order of a model's layers on the charts: input side first.

/// A sort key that orders `fc2` before `fc10`.
pub fn natural_key(s: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    for c in s.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push_str(&format!("{:0>20}", digits));
                digits.clear();
            }
            if c != '\0' {
                out.push(c);
            }
        }
    }
    out
}

/// Sorts `(layer, T)` pairs input side first: the layers the model record
/// lists (`model_order`, in its order) come first, then the others in
/// natural name order.
pub fn sort_layers<T>(items: &mut [(String, T)], model_order: &[String]) {
    items.sort_by_cached_key(|(layer, _)| {
        let at = model_order.iter().position(|l| l == layer);
        (at.unwrap_or(usize::MAX), natural_key(layer))
    });
}

/// At most `n` items, evenly spread, keeping the first and the last.
pub fn spread<T>(items: Vec<T>, n: usize) -> Vec<T> {
    if items.len() <= n || n < 2 {
        return items;
    }
    let len = items.len();
    let keep: Vec<usize> = (0..n).map(|i| i * (len - 1) / (n - 1)).collect();
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, t)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_and_spread() {
        let mut names = vec!["fc10", "fc2", "head", "fc1"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, ["fc1", "fc2", "fc10", "head"]);
        assert_eq!(spread((0..12).collect(), 4), [0, 3, 7, 11]);
        assert_eq!(spread(vec![1, 2], 8), [1, 2]);
    }

    #[test]
    fn model_order_first_then_names() {
        let mut layers: Vec<(String, ())> = ["fc10", "head", "fc2", "conv", "extra1"]
            .iter()
            .map(|s| (s.to_string(), ()))
            .collect();
        let model = vec![
            "conv".to_string(),
            "fc10".into(),
            "fc2".into(),
            "head".into(),
        ];
        sort_layers(&mut layers, &model);
        let names: Vec<&str> = layers.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, ["conv", "fc10", "fc2", "head", "extra1"]);
        sort_layers(&mut layers, &[]);
        let names: Vec<&str> = layers.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, ["conv", "extra1", "fc2", "fc10", "head"]);
    }
}
