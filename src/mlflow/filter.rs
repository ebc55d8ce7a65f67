//! MLflow's run search: the filter (`metrics.loss < 1.0 and
//! params.lr = '0.1' and tags.x = 'y' and attributes.status = 'FINISHED'`),
//! `order_by` and page tokens. Pure: evaluated over loaded runs.

use std::cmp::Ordering;

use base64::Engine as _;

use super::error::MlflowError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Attribute,
    Param,
    Tag,
    Metric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
}

/// One comparison of the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub entity: Entity,
    pub key: String,
    pub op: Op,
    pub value: Literal,
}

/// What a run offers a filter or an ordering: a value per (entity, key).
pub trait Fields {
    fn text(&self, entity: Entity, key: &str) -> Option<String>;
    fn number(&self, entity: Entity, key: &str) -> Option<f64>;
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    And,
}

fn tokens(s: &str) -> Result<Vec<Tok>, MlflowError> {
    let bad = |m: String| MlflowError::invalid(format!("Invalid filter '{s}': {m}"));
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' || ch == '"' {
            let end = c[i + 1..]
                .iter()
                .position(|&x| x == ch)
                .ok_or_else(|| bad("unterminated string".into()))?;
            out.push(Tok::Str(c[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if "=!<>".contains(ch) {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            let (op, n) = match two.as_str() {
                "!=" => (Op::Ne, 2),
                "<=" => (Op::Le, 2),
                ">=" => (Op::Ge, 2),
                "==" => (Op::Eq, 2),
                _ => match ch {
                    '=' => (Op::Eq, 1),
                    '<' => (Op::Lt, 1),
                    '>' => (Op::Gt, 1),
                    _ => return Err(bad(format!("unexpected '{ch}'"))),
                },
            };
            out.push(Tok::Op(op));
            i += n;
        } else if ch.is_ascii_digit()
            || ch == '-'
            || ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)
        {
            let start = i;
            i += 1;
            while i < c.len()
                && (c[i].is_ascii_alphanumeric()
                    || c[i] == '.'
                    || c[i] == '+'
                    || c[i] == '-' && matches!(c[i - 1], 'e' | 'E'))
            {
                i += 1;
            }
            let text: String = c[start..i].iter().collect();
            let n = text
                .parse()
                .map_err(|_| bad(format!("bad number {text}")))?;
            out.push(Tok::Num(n));
        } else {
            // An identifier: entity.key, where the key may be quoted with
            // backticks or double quotes.
            let mut ident = String::new();
            while i < c.len() && !c[i].is_whitespace() && !"=!<>'".contains(c[i]) {
                if c[i] == '`' || c[i] == '"' {
                    let q = c[i];
                    let end = c[i + 1..]
                        .iter()
                        .position(|&x| x == q)
                        .ok_or_else(|| bad("unterminated quoted key".into()))?;
                    ident.extend(&c[i + 1..i + 1 + end]);
                    i += end + 2;
                } else {
                    ident.push(c[i]);
                    i += 1;
                }
            }
            out.push(match ident.to_ascii_uppercase().as_str() {
                "AND" => Tok::And,
                "LIKE" => Tok::Op(Op::Like),
                "ILIKE" => Tok::Op(Op::ILike),
                "OR" => return Err(bad("OR is not supported; join comparisons with AND".into())),
                _ => Tok::Ident(ident),
            });
        }
    }
    Ok(out)
}

/// The entity and key of `metrics.loss`, `params.lr`, `tags.x`,
/// `attributes.status` (a bare name is an attribute).
fn identifier(ident: &str) -> Result<(Entity, String), MlflowError> {
    let Some((prefix, key)) = ident.split_once('.') else {
        return Ok((Entity::Attribute, ident.to_string()));
    };
    let entity = match prefix.to_ascii_lowercase().as_str() {
        "attribute" | "attributes" | "attr" | "run" => Entity::Attribute,
        "param" | "params" | "parameter" | "parameters" => Entity::Param,
        "tag" | "tags" => Entity::Tag,
        "metric" | "metrics" => Entity::Metric,
        _ => {
            return Err(MlflowError::invalid(format!(
                "Invalid entity type '{prefix}'. Valid values are ['metric', 'parameter', 'tag', 'attribute']"
            )));
        }
    };
    if key.is_empty() {
        return Err(MlflowError::invalid(format!(
            "Invalid identifier '{ident}'"
        )));
    }
    Ok((entity, key.to_string()))
}

/// Parses an AND-joined filter; an empty one is no clause.
pub fn parse_filter(s: &str) -> Result<Vec<Clause>, MlflowError> {
    let toks = tokens(s)?;
    let bad = |m: &str| MlflowError::invalid(format!("Invalid filter '{s}': {m}"));
    let mut out = Vec::new();
    let mut it = toks.into_iter().peekable();
    while it.peek().is_some() {
        let Some(Tok::Ident(ident)) = it.next() else {
            return Err(bad("expected an identifier such as metrics.loss"));
        };
        let (entity, key) = identifier(&ident)?;
        let Some(Tok::Op(op)) = it.next() else {
            return Err(bad("expected a comparison operator"));
        };
        let value = match it.next() {
            Some(Tok::Str(v)) => Literal::Str(v),
            Some(Tok::Num(n)) => Literal::Num(n),
            _ => return Err(bad("expected a value")),
        };
        match (entity, &value, op) {
            (Entity::Metric, Literal::Str(_), _) => {
                return Err(bad("metrics are compared with numbers"));
            }
            (Entity::Param | Entity::Tag, Literal::Num(_), _) => {
                return Err(bad("params and tags are compared with quoted strings"));
            }
            (Entity::Param | Entity::Tag, _, Op::Lt | Op::Le | Op::Gt | Op::Ge) => {
                return Err(bad("params and tags take =, !=, LIKE or ILIKE"));
            }
            (Entity::Metric, _, Op::Like | Op::ILike) => {
                return Err(bad("metrics take =, !=, <, <=, > or >="));
            }
            _ => {}
        }
        out.push(Clause {
            entity,
            key,
            op,
            value,
        });
        match it.next() {
            None => break,
            Some(Tok::And) => {}
            Some(_) => return Err(bad("expected AND between comparisons")),
        }
    }
    Ok(out)
}

/// SQL LIKE: `%` any run, `_` one character.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&t, &p)
}

fn compare(op: Op, ord: Ordering) -> bool {
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Like | Op::ILike => false,
    }
}

impl Clause {
    /// Whether a run satisfies the clause; a run without the key does not.
    pub fn matches(&self, run: &impl Fields) -> bool {
        match &self.value {
            Literal::Num(want) => match run.number(self.entity, &self.key) {
                // NaN compares as nothing, as in SQL.
                Some(got) => got.partial_cmp(want).is_some_and(|o| compare(self.op, o)),
                None => false,
            },
            Literal::Str(want) => {
                let Some(got) = run.text(self.entity, &self.key) else {
                    return false;
                };
                match self.op {
                    Op::Like => like(&got, want),
                    Op::ILike => like(&got.to_lowercase(), &want.to_lowercase()),
                    op => compare(op, got.as_str().cmp(want.as_str())),
                }
            }
        }
    }
}

/// One `order_by` term: `metrics.loss DESC`, `attributes.start_time`, …
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub entity: Entity,
    pub key: String,
    pub ascending: bool,
}

pub fn parse_order_by(s: &str) -> Result<OrderBy, MlflowError> {
    let mut words: Vec<&str> = s.split_whitespace().collect();
    let ascending = match words.last().map(|w| w.to_ascii_uppercase()) {
        Some(w) if w == "DESC" => {
            words.pop();
            false
        }
        Some(w) if w == "ASC" => {
            words.pop();
            true
        }
        _ => true,
    };
    if words.is_empty() {
        return Err(MlflowError::invalid(format!(
            "Invalid order_by clause '{s}'"
        )));
    }
    let ident = words.join(" ").replace(['`', '"'], "");
    let (entity, key) = identifier(&ident)?;
    Ok(OrderBy {
        entity,
        key,
        ascending,
    })
}

/// Orders runs by `terms`, then by start time (newest first) and id, as
/// MLflow does; runs without a term's key come last either way.
pub fn order_runs<R: Fields>(runs: &mut [R], terms: &[OrderBy]) {
    let defaults = [
        OrderBy {
            entity: Entity::Attribute,
            key: "start_time".into(),
            ascending: false,
        },
        OrderBy {
            entity: Entity::Attribute,
            key: "run_id".into(),
            ascending: true,
        },
    ];
    runs.sort_by(|a, b| {
        for t in terms.iter().chain(&defaults) {
            let ord = match (a.number(t.entity, &t.key), b.number(t.entity, &t.key)) {
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(&y);
                    if t.ascending { o } else { o.reverse() }
                }
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => match (a.text(t.entity, &t.key), b.text(t.entity, &t.key)) {
                    (Some(x), Some(y)) => {
                        let o = x.cmp(&y);
                        if t.ascending { o } else { o.reverse() }
                    }
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                },
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// MLflow's page token: base64 of `{"offset": n}`.
pub fn page_token(offset: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
}

pub fn parse_page_token(token: Option<&str>) -> Result<usize, MlflowError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = || MlflowError::invalid(format!("Invalid page token '{token}'"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    v["offset"].as_u64().map(|o| o as usize).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct R {
        attrs: HashMap<&'static str, String>,
        params: HashMap<&'static str, String>,
        metrics: HashMap<&'static str, f64>,
    }

    impl Fields for R {
        fn text(&self, e: Entity, k: &str) -> Option<String> {
            match e {
                Entity::Attribute => self.attrs.get(k).cloned(),
                Entity::Param | Entity::Tag => self.params.get(k).cloned(),
                Entity::Metric => None,
            }
        }
        fn number(&self, e: Entity, k: &str) -> Option<f64> {
            match e {
                Entity::Metric => self.metrics.get(k).copied(),
                Entity::Attribute if k == "start_time" => {
                    self.attrs.get(k).and_then(|v| v.parse().ok())
                }
                _ => None,
            }
        }
    }

    fn run(status: &str, lr: &str, loss: f64, start: u32) -> R {
        R {
            attrs: [
                ("status", status.to_string()),
                ("start_time", start.to_string()),
                ("run_id", format!("r{start}")),
            ]
            .into(),
            params: [("lr", lr.to_string())].into(),
            metrics: [("loss", loss)].into(),
        }
    }

    #[test]
    fn parses_the_four_entities_and_joins_with_and() {
        let c = parse_filter(
            "attributes.status = 'FINISHED' and params.lr = \"0.1\" AND tags.`my tag` != 'y' and metrics.loss < 1.0",
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].entity, Entity::Attribute);
        assert_eq!(c[1].value, Literal::Str("0.1".into()));
        assert_eq!(
            (c[2].entity, c[2].key.as_str(), c[2].op),
            (Entity::Tag, "my tag", Op::Ne)
        );
        assert_eq!((c[3].op, &c[3].value), (Op::Lt, &Literal::Num(1.0)));
        assert!(parse_filter("").unwrap().is_empty());
        assert_eq!(
            parse_filter("metrics.x >= -1e-3").unwrap()[0].value,
            Literal::Num(-1e-3)
        );
    }

    #[test]
    fn refuses_what_mlflow_refuses_with_invalid_parameter_value() {
        for bad in [
            "metrics.loss < 'a'",
            "params.lr > '0.1'",
            "foo.bar = 'x'",
            "metrics.loss < 1 or metrics.loss > 2",
            "params.lr = '0.1",
            "metrics.loss 1",
        ] {
            let e = parse_filter(bad).unwrap_err();
            assert_eq!(e.code, "INVALID_PARAMETER_VALUE", "{bad}");
            assert_eq!(e.status.as_u16(), 400);
        }
    }

    #[test]
    fn filters_and_orders() {
        let runs = vec![
            run("FINISHED", "0.1", 0.5, 1),
            run("RUNNING", "0.1", 2.0, 2),
            run("FINISHED", "0.01", f64::NAN, 3),
        ];
        let c = parse_filter("attributes.status = 'FINISHED' and metrics.loss < 1").unwrap();
        let kept: Vec<_> = runs
            .iter()
            .filter(|r| c.iter().all(|c| c.matches(*r)))
            .collect();
        assert_eq!(kept.len(), 1);
        let c = parse_filter("params.lr LIKE '0.0%'").unwrap();
        assert_eq!(runs.iter().filter(|r| c[0].matches(*r)).count(), 1);

        let mut runs = runs;
        order_runs(&mut runs, &[parse_order_by("metrics.loss DESC").unwrap()]);
        let losses: Vec<f64> = runs.iter().map(|r| r.metrics["loss"]).collect();
        assert!(
            losses[0].is_nan() && losses[1] == 2.0 && losses[2] == 0.5,
            "{losses:?}"
        );
        order_runs(&mut runs, &[]);
        assert_eq!(runs[0].attrs["start_time"], "3", "newest first by default");
    }

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(parse_page_token(Some(&page_token(1000))).unwrap(), 1000);
        assert_eq!(parse_page_token(None).unwrap(), 0);
        assert!(parse_page_token(Some("!!")).is_err());
    }
}
