//! The reads of the compare and tune pages (`web/compare.rs`): chosen runs
//! with their configs, a project's runs, and a project's loss and accuracy
//! series summarised — last value from `series`, best values from the
//! chunks' stored minima and maxima — so a tune page of a thousand runs
//! reads a few numbers per run, never a point.

use std::collections::HashMap;

use sqlx::FromRow;
use uuid::Uuid;

use super::runs::{RunRow, SELECT_RUNS};
use super::scalars::f64_from_blob;
use super::{Result, Store, parse_uuid, placeholders};
use crate::model::{Run, RunFilter};

/// A run's series, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    pub key: String,
    /// The value at the last step, exactly (NaN and ±Inf kept).
    pub last: Option<f64>,
    /// The smallest and the largest finite value; `None` without one.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(FromRow)]
struct SummaryRow {
    run_id: String,
    key: String,
    last_value: Option<Vec<u8>>,
    min_value: Option<f64>,
    max_value: Option<f64>,
}

/// The series of a project's runs whose key names a loss, an error, an
/// accuracy or another score (what the tune page's metrics are made of;
/// per-layer series are left to `compare::metric`), with their last value and
/// their finite extremes over the chunks. A chunk without a finite value
/// stores NaN (PostgreSQL) or NULL (SQLite) as its extremes; the `<=`
/// leaves both out (PostgreSQL's NaN compares greater than every number).
const SUMMARY_SQL: &str = "SELECT s.run_id, s.key, s.last_value, \
     (SELECT MIN(CASE WHEN c.min_value <= 1.7e308 THEN c.min_value END) FROM scalar_chunks c WHERE c.series_id = s.id) AS min_value, \
     (SELECT MAX(CASE WHEN c.max_value <= 1.7e308 THEN c.max_value END) FROM scalar_chunks c WHERE c.series_id = s.id) AS max_value \
     FROM series s JOIN runs r ON r.id = s.run_id JOIN projects p ON p.id = r.project_id \
     WHERE p.name = $1 AND (LOWER(s.key) LIKE '%loss%' OR LOWER(s.key) LIKE '%acc%' \
     OR LOWER(s.key) LIKE '%err%' OR LOWER(s.key) LIKE '%f1%' OR LOWER(s.key) LIKE '%auc%' \
     OR LOWER(s.key) LIKE '%bleu%' OR LOWER(s.key) LIKE '%rouge%' OR LOWER(s.key) LIKE '%perplex%' \
     OR LOWER(s.key) LIKE '%ppl%' OR LOWER(s.key) LIKE '%iou%' OR LOWER(s.key) LIKE '%score%') \
     ORDER BY s.run_id, s.key";

impl Store {
    /// The runs of `ids` that exist, with their configs, in the order of
    /// `ids`.
    pub async fn runs_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Run>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{SELECT_RUNS}WHERE r.id IN ({})",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.to_string());
        }
        let mut found: HashMap<Uuid, Run> = HashMap::new();
        for row in query.fetch_all(self.pool()).await? {
            let run = Run::try_from(row)?;
            found.insert(run.id, run);
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// Every run of `project` with its config, newest first.
    pub async fn project_runs(&self, project: &str) -> Result<Vec<Run>> {
        const PAGE: u32 = 1000;
        let mut out = Vec::new();
        loop {
            let page = self
                .list_runs(&RunFilter {
                    project: Some(project.to_string()),
                    status: None,
                    limit: PAGE,
                    offset: out.len() as u32,
                    with_config: true,
                })
                .await?;
            let full = page.len() as u32 == PAGE;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// The loss, accuracy and score series of each run of `project` (keys
    /// containing `loss`, `acc`, `err`, `f1`, `auc`, `bleu`, `rouge`,
    /// `perplex`, `ppl`, `iou` or `score`, any case), summarised, in one
    /// statement.
    pub async fn metric_summaries(
        &self,
        project: &str,
    ) -> Result<HashMap<Uuid, Vec<SeriesSummary>>> {
        let rows: Vec<SummaryRow> = sqlx::query_as(SUMMARY_SQL)
            .bind(project)
            .fetch_all(self.pool())
            .await?;
        let mut out: HashMap<Uuid, Vec<SeriesSummary>> = HashMap::new();
        for r in rows {
            out.entry(parse_uuid(&r.run_id)?)
                .or_default()
                .push(SeriesSummary {
                    key: r.key,
                    last: r.last_value.as_deref().map(f64_from_blob).transpose()?,
                    min: r.min_value.filter(|v| v.is_finite()),
                    max: r.max_value.filter(|v| v.is_finite()),
                });
        }
        Ok(out)
    }
}
