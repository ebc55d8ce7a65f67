//! Projects and runs.

use sqlx::{AnyConnection, FromRow};
use uuid::Uuid;

use super::{
    Result, Store, StoreError, WriteTx, from_json, now, parse_uuid, parse_word, placeholders,
    to_json,
};
use crate::diagnostics::names::{self, Role};
use crate::model::{
    Config, NewRun, Project, Run, RunFilter, RunSort, RunTableQuery, SeriesInfo, Severity,
};

/// `SELECT` of the columns of [`RunRow`], followed by `$tail`.
macro_rules! select_runs {
    ($tail:literal) => {
        select_runs!("r.config", $tail)
    };
    ($config:literal, $tail:literal) => {
        concat!(
            "SELECT r.id, p.name AS project, r.name, r.status, ",
            $config,
            " AS config, r.tags, r.run_key, r.created_at, \
             r.updated_at, r.heartbeat_at, r.end_step, r.data_version \
             FROM runs r JOIN projects p ON p.id = r.project_id ",
            $tail
        )
    };
}

/// The `SELECT` of [`RunRow`] with configs and no `WHERE`, for the reads of
/// `store/compare.rs`, which add their own.
pub(crate) const SELECT_RUNS: &str = select_runs!("");

#[derive(FromRow)]
pub(crate) struct RunRow {
    id: String,
    project: String,
    name: String,
    status: String,
    /// `None` from the lists that leave configs off.
    config: Option<String>,
    tags: String,
    run_key: Option<String>,
    created_at: f64,
    updated_at: f64,
    heartbeat_at: Option<f64>,
    end_step: Option<i64>,
    data_version: i64,
}

try_from_row!(RunRow => Run, |r| {
    Ok(Run {
        id: parse_uuid(&r.id)?,
        project: r.project,
        name: r.name,
        status: parse_word(&r.status)?,
        config: r
            .config
            .map(|text| {
                Config::from_text(text)
                    .map_err(|e| StoreError::Corrupt(format!("run config: {e}")))
            })
            .transpose()?,
        tags: from_json("run tags", &r.tags)?,
        run_key: r.run_key,
        created_at: r.created_at,
        updated_at: r.updated_at,
        heartbeat_at: r.heartbeat_at,
        end_step: r.end_step.map(|s| s as u64),
        data_version: r.data_version,
    })
});

#[derive(FromRow)]
struct ProjectRow {
    name: String,
    created_at: f64,
    runs: i64,
}

/// One page of the runs table, in the order asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTable {
    /// The runs of the page (without their configs).
    pub rows: Vec<RunTableRow>,
    /// Runs matching the filters, over every page.
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunTableRow {
    pub run: Run,
    /// The worst open finding of warning or worse.
    pub worst: Option<Severity>,
    /// Open findings of warning or worse.
    pub open: i64,
}

#[derive(FromRow)]
struct PageRow {
    id: String,
    total: i64,
}

#[derive(FromRow)]
struct HealthRow {
    run_id: String,
    worst: i64,
    open: i64,
}

/// `normalize` (diagnostics/names.rs) of `s.key`, in SQL.
const NORMALIZED_KEY: &str = "LOWER(REPLACE(REPLACE(REPLACE(REPLACE(TRIM(s.key), '/', '_'), '.', '_'), '-', '_'), ' ', '_'))";

/// The last value (finite, else NULL) of run `r`'s preferred series of
/// `role`: the lowest rank, then the first key — the choice `names::classify`
/// makes on the run page.
fn role_value_sql(role: Role, hint: &str) -> String {
    let keys: Vec<(&str, u8)> = names::run_keys(role).collect();
    // Every key of the role contains `hint`: a cheap test that spares most
    // of a run's series (per-layer signals, …) the normalisation.
    assert!(
        keys.iter().all(|(k, _)| k.contains(hint)),
        "{role:?}: {hint}"
    );
    // The keys are this crate's constants (lower-case words and `_`).
    debug_assert!(
        keys.iter()
            .all(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
    let list: Vec<String> = keys.iter().map(|(k, _)| format!("'{k}'")).collect();
    let ranks: String = keys
        .iter()
        .map(|(k, r)| format!(" WHEN '{k}' THEN {r}"))
        .collect();
    format!(
        "(SELECT s.last_real FROM series s WHERE s.run_id = r.id AND LOWER(s.key) LIKE '%{hint}%' \
         AND {NORMALIZED_KEY} IN ({}) \
         ORDER BY CASE {NORMALIZED_KEY}{ranks} END, s.key LIMIT 1)",
        list.join(", ")
    )
}

/// The worst open finding's rank (0: none of warning or worse) of run `r`.
const HEALTH_SQL: &str = "COALESCE((SELECT MAX(f.severity_rank) FROM findings f \
     WHERE f.run_id = r.id AND f.status = 'open' AND f.severity_rank >= 1), 0)";

/// The last step of run `r`: its series' furthest, else its end step.
const LAST_STEP_SQL: &str =
    "COALESCE((SELECT MAX(s.last_step) FROM series s WHERE s.run_id = r.id), r.end_step)";

/// An SQL expression for a sort column, and whether it can be NULL.
fn sort_sql(sort: RunSort) -> (String, bool) {
    match sort {
        RunSort::Name => ("r.name".into(), false),
        RunSort::Status => ("r.status".into(), false),
        RunSort::Health => (HEALTH_SQL.into(), false),
        RunSort::LastStep => (LAST_STEP_SQL.into(), true),
        RunSort::ValLoss => (role_value_sql(Role::ValLoss, "loss"), true),
        RunSort::ValAcc => (role_value_sql(Role::ValAcc, "acc"), true),
        RunSort::Duration => ("(r.updated_at - r.created_at)".into(), false),
        RunSort::Started => ("r.created_at".into(), false),
    }
}

/// `s` as a LIKE pattern matching it anywhere, with `!` as the escape.
fn like_anywhere(s: &str) -> String {
    let mut out = String::from("%");
    for c in s.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A run that was created, or found by its `run_key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub run: Run,
    /// False when a run with the same `run_key` already existed.
    pub created: bool,
}

impl Store {
    /// Creates a run — or, when the project already has a run with
    /// `new.run_key`, returns that one.
    pub async fn create_run(&self, new: &NewRun) -> Result<Run> {
        Ok(self.open_run(new).await?.run)
    }

    /// [`Store::create_run`], saying whether the run is new.
    pub async fn open_run(&self, new: &NewRun) -> Result<Created> {
        let mut tries = 0;
        let (id, created) = loop {
            match in_write!(self, |tx| insert_run(tx, new).await) {
                // Two replicas created the same run_key at once: the other won.
                Err(e) if is_unique_violation(&e) && new.run_key.is_some() && tries == 0 => {
                    tries += 1;
                }
                other => break other?,
            }
        };
        let run = self.get_run(id).await?.ok_or(StoreError::RunNotFound)?;
        Ok(Created { run, created })
    }

    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>> {
        let row: Option<RunRow> = sqlx::query_as(select_runs!("WHERE r.id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.map(Run::try_from).transpose()
    }

    /// Runs, newest first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        const WITH_CONFIG: &str = select_runs!(
            "r.config",
            "WHERE (CAST($1 AS TEXT) IS NULL OR p.name = $1) AND (CAST($2 AS TEXT) IS NULL OR r.status = $2) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        );
        const WITHOUT_CONFIG: &str = select_runs!(
            "CAST(NULL AS TEXT)",
            "WHERE (CAST($1 AS TEXT) IS NULL OR p.name = $1) AND (CAST($2 AS TEXT) IS NULL OR r.status = $2) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"
        );
        let sql = if filter.with_config {
            WITH_CONFIG
        } else {
            WITHOUT_CONFIG
        };
        let rows: Vec<RunRow> = sqlx::query_as(sql)
            .bind(filter.project.clone())
            .bind(filter.status.map(|s| s.as_str().to_string()))
            .bind(i64::from(filter.limit))
            .bind(i64::from(filter.offset))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(Run::try_from).collect()
    }

    /// Every run of `project` (newest first, with its config) and its
    /// series, loaded a page of runs at a time: the runs table's data.
    pub async fn runs_with_series(&self, project: &str) -> Result<Vec<(Run, Vec<SeriesInfo>)>> {
        const PAGE: u32 = 1000;
        let mut out = Vec::new();
        loop {
            let filter = RunFilter {
                project: Some(project.to_string()),
                status: None,
                limit: PAGE,
                offset: out.len() as u32,
                with_config: true,
            };
            let page = self.list_runs(&filter).await?;
            let full = page.len() as u32 == PAGE;
            for run in page {
                let series = self.series(run.id).await?;
                out.push((run, series));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// One page of the runs table: filtered, sorted and cut in SQL (the
    /// page's runs, then their health, by id), so a page costs about the
    /// same whatever the project's size. Missing values (no such series, a
    /// non-finite last value) sort last either way; ties go newest first.
    pub async fn run_table(&self, q: &RunTableQuery) -> Result<RunTable> {
        let mut binds: Vec<String> = Vec::new();
        let mut wheres: Vec<String> = Vec::new();
        let mut bind = |v: String| {
            binds.push(v);
            format!("${}", binds.len())
        };
        if let Some(p) = &q.project {
            wheres.push(format!("p.name = {}", bind(p.clone())));
        }
        if let Some(st) = q.status {
            wheres.push(format!("r.status = {}", bind(st.as_str().into())));
        }
        if let Some(h) = q.health {
            // A rank of our own, not a user string: written into the SQL.
            wheres.push(format!("{HEALTH_SQL} = {}", h.rank()));
        }
        if let Some(tag) = &q.tag {
            // Tags are stored as compact JSON: an element starts after `[` or
            // `,`, and a quote inside a string is always escaped, so this
            // matches whole elements only. REPLACE is case-sensitive on both
            // backends (LIKE is not on SQLite).
            let enc = to_json(tag);
            let first = bind(format!("[{enc}"));
            let later = bind(format!(",{enc}"));
            wheres.push(format!(
                "(REPLACE(r.tags, {first}, '') <> r.tags OR REPLACE(r.tags, {later}, '') <> r.tags)"
            ));
        }
        if let Some(text) = q.search.as_deref().filter(|t| !t.is_empty()) {
            let pat = bind(like_anywhere(&text.to_ascii_lowercase()));
            wheres.push(format!("LOWER(r.name) LIKE {pat} ESCAPE '!'"));
        }
        let (expr, nullable) = sort_sql(q.sort);
        let dir = if q.descending { "DESC" } else { "ASC" };
        let nulls_last = if nullable { "sort_value IS NULL, " } else { "" };
        // The sort value is computed once per matching run (a materialised
        // CTE, so neither backend inlines it twice into ORDER BY).
        let sql = format!(
            "WITH t AS MATERIALIZED (SELECT r.id, r.created_at, {expr} AS sort_value \
             FROM runs r JOIN projects p ON p.id = r.project_id{}{}) \
             SELECT id, CAST(COUNT(*) OVER () AS BIGINT) AS total FROM t \
             ORDER BY {nulls_last}sort_value {dir}, created_at DESC, id DESC LIMIT {} OFFSET {}",
            if wheres.is_empty() { "" } else { " WHERE " },
            wheres.join(" AND "),
            q.limit,
            q.offset,
        );
        let mut query = sqlx::query_as::<_, PageRow>(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b.clone());
        }
        let page: Vec<PageRow> = query.fetch_all(self.pool()).await?;
        let total = match page.first() {
            Some(row) => row.total as u64,
            None if q.offset > 0 => {
                // Past the end: count without the page.
                let count_sql = format!(
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM runs r JOIN projects p ON p.id = r.project_id{}{}",
                    if wheres.is_empty() { "" } else { " WHERE " },
                    wheres.join(" AND "),
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
                for b in &binds {
                    query = query.bind(b.clone());
                }
                query.fetch_one(self.pool()).await? as u64
            }
            None => 0,
        };
        if page.is_empty() {
            return Ok(RunTable {
                rows: Vec::new(),
                total,
            });
        }

        let ids = placeholders(1, page.len());
        let runs_sql = format!(
            "{}WHERE r.id IN ({ids})",
            select_runs!("CAST(NULL AS TEXT)", "")
        );
        let mut query = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(runs_sql));
        for row in &page {
            query = query.bind(row.id.clone());
        }
        let mut runs: std::collections::HashMap<String, Run> = std::collections::HashMap::new();
        for row in query.fetch_all(self.pool()).await? {
            let id = row.id.clone();
            runs.insert(id, Run::try_from(row)?);
        }
        let health_sql = format!(
            "SELECT run_id, MAX(severity_rank) AS worst, CAST(COUNT(*) AS BIGINT) AS open FROM findings \
             WHERE status = 'open' AND severity_rank >= 1 AND run_id IN ({ids}) GROUP BY run_id"
        );
        let mut query = sqlx::query_as::<_, HealthRow>(sqlx::AssertSqlSafe(health_sql));
        for row in &page {
            query = query.bind(row.id.clone());
        }
        let health: std::collections::HashMap<String, (i64, i64)> = query
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|h| (h.run_id, (h.worst, h.open)))
            .collect();
        let rows = page
            .iter()
            .filter_map(|p| {
                // A run deleted between the two reads is left out.
                let run = runs.remove(&p.id)?;
                let (worst, open) = health.get(&p.id).copied().unwrap_or((0, 0));
                Some(RunTableRow {
                    run,
                    worst: usize::try_from(worst)
                        .ok()
                        .filter(|w| *w >= 1)
                        .and_then(|w| Severity::ALL.get(w).copied()),
                    open,
                })
            })
            .collect();
        Ok(RunTable { rows, total })
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows: Vec<ProjectRow> = sqlx::query_as(
            "SELECT p.name, p.created_at, CAST(COUNT(r.id) AS BIGINT) AS runs \
             FROM projects p LEFT JOIN runs r ON r.project_id = p.id \
             GROUP BY p.id, p.name, p.created_at ORDER BY p.name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Project {
                name: r.name,
                created_at: r.created_at,
                runs: r.runs,
            })
            .collect())
    }

    /// Records that the client is alive.
    pub async fn heartbeat(&self, run: Uuid) -> Result<Run> {
        // A heartbeat revives a run that was marked crashed.
        let updated = self
            .write_one(
                sqlx::query(
                    "UPDATE runs SET heartbeat_at = $2, \
                     changed_at = CASE WHEN status = 'crashed' THEN $2 ELSE changed_at END, \
                     status = CASE WHEN status = 'crashed' THEN 'running' ELSE status END WHERE id = $1",
                )
                .bind(run.to_string())
                .bind(now()),
            )
            .await?;
        if updated == 0 {
            return Err(StoreError::RunNotFound);
        }
        self.get_run(run).await?.ok_or(StoreError::RunNotFound)
    }

    /// Marks running runs with neither data nor a heartbeat for `stale_after`
    /// seconds as crashed (new data or a heartbeat makes them running again);
    /// returns how many.
    pub async fn mark_crashed(&self, stale_after: f64) -> Result<u64> {
        let now = now();
        self.write_one(
            sqlx::query(
                "UPDATE runs SET status = 'crashed', data_version = data_version + 1, changed_at = $2 \
                 WHERE status = 'running' AND updated_at < $1 AND COALESCE(heartbeat_at, 0) < $1",
            )
            .bind(now - stale_after)
            .bind(now),
        )
        .await
    }

    /// Forgets `Idempotency-Key`s older than `max_age` seconds.
    pub async fn prune_idempotency_keys(&self, max_age: f64) -> Result<u64> {
        self.write_one(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(now() - max_age),
        )
        .await
    }
}

pub(crate) fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(db)) if db.is_unique_violation())
}

/// Inserts a run (and its project) — or finds the project's run with the same
/// `run_key` — inside `tx`; returns its id and whether it is new.
pub(crate) async fn insert_run(tx: &mut WriteTx<'_>, new: &NewRun) -> Result<(Uuid, bool)> {
    let conn: &mut AnyConnection = tx;
    let now = now();
    sqlx::query(
        "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&new.project)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let project_id: i64 = sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
        .bind(&new.project)
        .fetch_one(&mut *conn)
        .await?;
    if let Some(key) = &new.run_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE project_id = $1 AND run_key = $2")
                .bind(project_id)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(id) = existing {
            return Ok((parse_uuid(&id)?, false));
        }
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO runs (id, project_id, name, config, tags, run_key, created_at, updated_at, heartbeat_at, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $7)",
    )
    .bind(id.to_string())
    .bind(project_id)
    .bind(&new.name)
    .bind(new.config.to_string())
    .bind(to_json(&new.tags))
    .bind(new.run_key.clone())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_sql_names_every_key_of_the_role() {
        for (role, hint) in [(Role::ValLoss, "loss"), (Role::ValAcc, "acc")] {
            let sql = role_value_sql(role, hint);
            for (k, rank) in names::run_keys(role) {
                assert!(sql.contains(&format!("WHEN '{k}' THEN {rank}")), "{sql}");
            }
        }
        assert_eq!(like_anywhere("a%b_c!"), "%a!%b!_c!!%");
        assert_eq!(placeholders(3, 2), "$3, $4");
    }
}
