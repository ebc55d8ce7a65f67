//! Ingest and import of a [`Batch`], the records beside the scalars
//! (histograms, model and dataset summaries, images, tensors, predictions),
//! and export of a whole run as a recording, page by page.

use sqlx::{AnyConnection, FromRow};
use uuid::Uuid;

use super::runs::insert_run;
use super::scalars::write_series;
use super::{Result, Store, StoreError, chunk, from_json, now, to_json};
use crate::model::{Batch, HistogramKey, IngestOutcome, NewRun, Run, RunStatus};
use crate::record::{
    DatasetRecord, EndRecord, HistogramRecord, ModelRecord, PredictionsRecord, Record, RunRecord,
    ScalarRecord, Value,
};

/// zstd level for step-record bodies: fast, and JSON of floats shrinks well.
const BODY_ZSTD_LEVEL: i32 = 3;

/// The kinds of record kept in `step_records`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Image,
    Tensor,
    Predictions,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Image => "image",
            StepKind::Tensor => "tensor",
            StepKind::Predictions => "predictions",
        }
    }
}

#[derive(FromRow)]
struct HistogramRow {
    key: String,
    step: i64,
    edges: String,
    counts: String,
    nonfinite: i64,
}

try_from_row!(HistogramRow => HistogramRecord, |r| {
    Ok(HistogramRecord {
        key: r.key,
        step: r.step as u64,
        edges: from_json("histogram edges", &r.edges)?,
        counts: from_json("histogram counts", &r.counts)?,
        nonfinite: r.nonfinite as u64,
    })
});

#[derive(FromRow)]
struct KeyRow {
    key: String,
    n: i64,
    first_step: i64,
    last_step: i64,
}

impl From<KeyRow> for HistogramKey {
    fn from(r: KeyRow) -> Self {
        HistogramKey {
            key: r.key,
            count: r.n,
            first_step: r.first_step as u64,
            last_step: r.last_step as u64,
        }
    }
}

#[derive(FromRow)]
struct BodyRow {
    body: String,
}

#[derive(FromRow)]
struct StepRecordRow {
    kind: String,
    body: Vec<u8>,
}

impl StepRecordRow {
    fn decode(&self) -> Result<Record> {
        let json = zstd::decode_all(&self.body[..])
            .map_err(|e| StoreError::Corrupt(format!("{} body: {e}", self.kind)))?;
        let corrupt =
            |e: serde_json::Error| StoreError::Corrupt(format!("{} body: {e}", self.kind));
        Ok(match self.kind.as_str() {
            "image" => Record::Image(serde_json::from_slice(&json).map_err(corrupt)?),
            "tensor" => Record::Tensor(serde_json::from_slice(&json).map_err(corrupt)?),
            "predictions" => Record::Predictions(serde_json::from_slice(&json).map_err(corrupt)?),
            other => return Err(StoreError::Corrupt(format!("step record kind {other:?}"))),
        })
    }
}

impl Store {
    /// Writes a batch into an existing run, all or nothing.
    pub async fn ingest(
        &self,
        run: Uuid,
        batch: &Batch,
        idempotency_key: Option<&str>,
    ) -> Result<IngestOutcome> {
        let outcome = in_write!(self, |tx| {
            let run = run.to_string();
            ingest_in(tx, &run, batch, idempotency_key, self.max_keys_per_run).await
        })?;
        if !outcome.replayed {
            self.count_written(batch);
        }
        Ok(outcome)
    }

    /// Creates a run and writes a whole recording into it, all or nothing.
    /// A recording whose `run_key` the project already has is written into
    /// that run (re-sent points replace theirs).
    pub async fn import(&self, new: &NewRun, batch: &Batch) -> Result<Run> {
        Ok(self.import_run(new, batch).await?.run)
    }

    /// [`Store::import`], saying whether the run is new.
    pub async fn import_run(&self, new: &NewRun, batch: &Batch) -> Result<super::runs::Created> {
        let (id, created) = in_write!(self, |tx| {
            let (id, created) = insert_run(tx, new).await?;
            write_batch(tx, &id.to_string(), batch, self.max_keys_per_run).await?;
            Ok((id, created))
        })?;
        self.count_written(batch);
        let run = self.get_run(id).await?.ok_or(StoreError::RunNotFound)?;
        Ok(super::runs::Created { run, created })
    }

    /// Sets the final status (and the last step, when given).
    pub async fn finish_run(&self, run: Uuid, status: RunStatus, step: Option<u64>) -> Result<Run> {
        let batch = Batch {
            end: Some((status, step)),
            ..Batch::default()
        };
        self.ingest(run, &batch, None).await?;
        self.get_run(run).await?.ok_or(StoreError::RunNotFound)
    }

    pub async fn histogram_keys(&self, run: Uuid) -> Result<Vec<HistogramKey>> {
        const SQL: &str = "SELECT key, CAST(COUNT(*) AS BIGINT) AS n, MIN(step) AS first_step, MAX(step) AS last_step \
             FROM histograms WHERE run_id = $1 GROUP BY key ORDER BY key";
        let rows: Vec<KeyRow> = self.run_rows(SQL, run).await?;
        Ok(rows.into_iter().map(HistogramKey::from).collect())
    }

    /// Histograms of a run (of one key when given), by key then step.
    pub async fn histograms(&self, run: Uuid, key: Option<&str>) -> Result<Vec<HistogramRecord>> {
        let rows: Vec<HistogramRow> = sqlx::query_as(
            "SELECT key, step, edges, counts, nonfinite FROM histograms \
             WHERE run_id = $1 AND (CAST($2 AS TEXT) IS NULL OR key = $2) ORDER BY key, step",
        )
        .bind(run.to_string())
        .bind(key.map(str::to_string))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(HistogramRecord::try_from).collect()
    }

    pub async fn model(&self, run: Uuid) -> Result<Option<ModelRecord>> {
        let row: Option<BodyRow> = self
            .run_row("SELECT body FROM models WHERE run_id = $1", run)
            .await?;
        row.map(|r| from_json("model", &r.body)).transpose()
    }

    pub async fn datasets(&self, run: Uuid) -> Result<Vec<DatasetRecord>> {
        const SQL: &str = "SELECT body FROM datasets WHERE run_id = $1 ORDER BY split";
        let rows: Vec<BodyRow> = self.run_rows(SQL, run).await?;
        rows.iter().map(|r| from_json("dataset", &r.body)).collect()
    }

    /// Keys of one kind of step record (images, tensors; for predictions,
    /// the splits), with their counts and step ranges.
    pub async fn step_record_keys(&self, run: Uuid, kind: StepKind) -> Result<Vec<HistogramKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT key, CAST(COUNT(*) AS BIGINT) AS n, MIN(step) AS first_step, MAX(step) AS last_step \
             FROM step_records WHERE run_id = $1 AND kind = $2 GROUP BY key ORDER BY key",
        )
        .bind(run.to_string())
        .bind(kind.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(HistogramKey::from).collect())
    }

    /// The steps that one key of a kind of step record has, in order (the
    /// primary key's index answers it without reading a body).
    pub async fn step_record_steps(
        &self,
        run: Uuid,
        kind: StepKind,
        key: &str,
    ) -> Result<Vec<u64>> {
        let steps: Vec<i64> = sqlx::query_scalar(
            "SELECT step FROM step_records WHERE run_id = $1 AND kind = $2 AND key = $3 ORDER BY step",
        )
        .bind(run.to_string())
        .bind(kind.as_str())
        .bind(key)
        .fetch_all(self.pool())
        .await?;
        Ok(steps.into_iter().map(|s| s as u64).collect())
    }

    /// The predictions of `split` at `step` (the latest when `step` is
    /// `None`): what the predictions analysis reads. `None` when the split
    /// has no predictions (at that step).
    pub async fn predictions_at(
        &self,
        run: Uuid,
        split: &str,
        step: Option<u64>,
    ) -> Result<Option<PredictionsRecord>> {
        let step = match step {
            Some(s) => s,
            None => match self
                .step_record_steps(run, StepKind::Predictions, split)
                .await?
                .last()
            {
                Some(s) => *s,
                None => return Ok(None),
            },
        };
        let recs = self
            .step_records(run, StepKind::Predictions, split, Some(step), Some(step), 1)
            .await?;
        Ok(recs.into_iter().find_map(|r| match r {
            Record::Predictions(p) => Some(p),
            _ => None,
        }))
    }

    /// The step records of one kind and key, by step, with
    /// `from <= step <= to`, at most `limit`.
    pub async fn step_records(
        &self,
        run: Uuid,
        kind: StepKind,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
        limit: u32,
    ) -> Result<Vec<Record>> {
        let (from, to) = super::scalars::step_range(from, to);
        let rows: Vec<StepRecordRow> = sqlx::query_as(
            "SELECT kind, body FROM step_records WHERE run_id = $1 AND kind = $2 AND key = $3 \
             AND step >= $4 AND step <= $5 ORDER BY step LIMIT $6",
        )
        .bind(run.to_string())
        .bind(kind.as_str())
        .bind(key)
        .bind(from as i64)
        .bind(to as i64)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(StepRecordRow::decode).collect()
    }

    /// The run as a recording: `run`, `model`, `dataset`s, then scalars,
    /// histograms and the other step records by step, then `end` when the run
    /// is over. Collects every page of [`Store::export_pages`]: for small
    /// runs and tests; the HTTP and CLI exports stream the pages.
    pub async fn export(&self, run: Uuid) -> Result<Vec<Record>> {
        let mut pages = self.export_pages(run).await?;
        let mut out = Vec::new();
        while let Some(page) = pages.next_page().await? {
            out.extend(page);
        }
        Ok(out)
    }

    /// A cursor over the recording of `run`, a window of steps at a time,
    /// so an export holds one window of the run in memory, never all of it:
    /// the decoded chunks of every series for one chunk's step range, and the
    /// records of [`EXPORT_WINDOW_RECORDS`]-ish scalars per page.
    pub async fn export_pages(&self, run: Uuid) -> Result<ExportPages<'_>> {
        let meta = self.get_run(run).await?.ok_or(StoreError::RunNotFound)?;
        const SQL: &str = "SELECT id, key FROM series WHERE run_id = $1 ORDER BY key";
        let series: Vec<(i64, String)> = self.run_rows(SQL, run).await?;
        // Steps per page: about EXPORT_WINDOW_RECORDS points over all series,
        // a power of two so that pages tile a chunk.
        let per_series = (EXPORT_WINDOW_RECORDS / series.len().max(1)).max(1) as u64;
        let width = (1u64 << per_series.ilog2()).min(chunk::CHUNK_STEPS);
        Ok(ExportPages {
            store: self,
            run: meta,
            series,
            width,
            cached: None,
            stage: Stage::Head,
        })
    }
}

/// Scalar points per export page (over all series), roughly.
pub const EXPORT_WINDOW_RECORDS: usize = 32 * 1024;

enum Stage {
    Head,
    /// Next page: steps from this one on.
    From(u64),
    Tail,
    Done,
}

/// One series' decoded chunk: (index into `ExportPages::series`, points).
type SeriesChunk = (usize, Vec<crate::model::Point>);

/// See [`Store::export_pages`].
pub struct ExportPages<'s> {
    store: &'s Store,
    run: Run,
    series: Vec<(i64, String)>,
    /// Steps per page.
    width: u64,
    /// The decoded chunk `c` of every series (by index into `series`).
    cached: Option<(i64, Vec<SeriesChunk>)>,
    stage: Stage,
}

impl ExportPages<'_> {
    /// The next records, in recording order; `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Record>>> {
        loop {
            match self.stage {
                Stage::Head => {
                    let store = self.store;
                    let id = self.run.id;
                    let mut out = vec![Record::Run(RunRecord {
                        name: self.run.name.clone(),
                        project: self.run.project.clone(),
                        config: self
                            .run
                            .config
                            .as_ref()
                            .map(crate::model::Config::parse)
                            .unwrap_or_default(),
                        tags: self.run.tags.clone(),
                        run_key: self.run.run_key.clone(),
                    })];
                    if let Some(model) = store.model(id).await? {
                        out.push(Record::Model(model));
                    }
                    out.extend(store.datasets(id).await?.into_iter().map(Record::Dataset));
                    self.stage = Stage::From(0);
                    return Ok(Some(out));
                }
                Stage::From(from) => {
                    let Some(start) = self.next_step(from).await? else {
                        self.stage = Stage::Tail;
                        continue;
                    };
                    let lo = start - start % self.width;
                    let hi = lo.saturating_add(self.width); // exclusive
                    let page = self.window(lo, hi).await?;
                    self.stage = if hi > i64::MAX as u64 {
                        Stage::Tail
                    } else {
                        Stage::From(hi)
                    };
                    return Ok(Some(page));
                }
                Stage::Tail => {
                    self.stage = Stage::Done;
                    let end = (self.run.status != RunStatus::Running).then(|| {
                        Record::End(EndRecord {
                            status: self.run.status.as_str().to_string(),
                            step: self.run.end_step,
                        })
                    });
                    return Ok(Some(end.into_iter().collect()));
                }
                Stage::Done => return Ok(None),
            }
        }
    }

    /// Decodes chunk `c` of every series, unless it is the cached one.
    async fn load_chunk(&mut self, c: i64) -> Result<()> {
        if self.cached.as_ref().is_some_and(|(cc, _)| *cc == c) {
            return Ok(());
        }
        self.cached = None;
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT c.series_id, c.data FROM scalar_chunks c JOIN series s ON s.id = c.series_id              WHERE s.run_id = $1 AND c.chunk = $2",
        )
        .bind(self.run.id.to_string())
        .bind(c)
        .fetch_all(self.store.pool())
        .await?;
        let mut decoded = Vec::with_capacity(rows.len());
        for (series_id, blob) in rows {
            if let Some(i) = self.series.iter().position(|(id, _)| *id == series_id) {
                decoded.push((i, chunk::decode(&blob)?));
            }
        }
        decoded.sort_by_key(|(i, _)| *i);
        self.cached = Some((c, decoded));
        Ok(())
    }

    /// The first step at or after `from` that has any record.
    async fn next_step(&mut self, from: u64) -> Result<Option<u64>> {
        let pool = self.store.pool();
        let run = self.run.id.to_string();
        let from_i = from.min(i64::MAX as u64) as i64;
        // Scalars: the first chunk that reaches `from`, then its points.
        let mut scalar = None;
        let mut after = from_i;
        loop {
            let c: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(c.chunk) FROM scalar_chunks c JOIN series s ON s.id = c.series_id                  WHERE s.run_id = $1 AND c.max_step >= $2",
            )
            .bind(&run)
            .bind(after)
            .fetch_one(pool)
            .await?;
            let Some(c) = c else { break };
            self.load_chunk(c).await?;
            let cached = &self.cached.as_ref().expect("just loaded").1;
            scalar = cached
                .iter()
                .filter_map(|(_, pts)| pts.iter().map(|p| p.step).find(|s| *s >= from))
                .min();
            if scalar.is_some() {
                break;
            }
            // Every point of this chunk is before `from`: look further on.
            after = ((c + 1) << chunk::CHUNK_SHIFT).max(from_i);
        }
        let mut first = scalar;
        for query in [
            "SELECT MIN(step) FROM histograms WHERE run_id = $1 AND step >= $2",
            "SELECT MIN(step) FROM step_records WHERE run_id = $1 AND step >= $2",
        ] {
            let step: Option<i64> = sqlx::query_scalar(query)
                .bind(&run)
                .bind(from_i)
                .fetch_one(pool)
                .await?;
            first = first.into_iter().chain(step.map(|s| s as u64)).min();
        }
        Ok(first)
    }

    /// Every record with `lo <= step < hi`; the range lies within one chunk.
    async fn window(&mut self, lo: u64, hi: u64) -> Result<Vec<Record>> {
        let pool = self.store.pool();
        let run = self.run.id.to_string();
        let (lo_i, hi_i) = (lo as i64, hi.min(i64::MAX as u64) as i64);
        let mut timeline: Vec<(u64, Record)> = Vec::new();
        self.load_chunk(chunk::chunk_of(lo)).await?;
        let cached = &self.cached.as_ref().expect("just loaded").1;
        for (i, points) in cached {
            let key = &self.series[*i].1;
            let first = points.partition_point(|p| p.step < lo);
            for p in points[first..].iter().take_while(|p| p.step < hi) {
                timeline.push((
                    p.step,
                    Record::Scalar(ScalarRecord {
                        step: p.step,
                        key: key.clone(),
                        value: Value(p.value),
                        time: p.time,
                    }),
                ));
            }
        }
        let hists: Vec<HistogramRow> = sqlx::query_as(
            "SELECT key, step, edges, counts, nonfinite FROM histograms \
             WHERE run_id = $1 AND step >= $2 AND step < $3 ORDER BY key, step",
        )
        .bind(&run)
        .bind(lo_i)
        .bind(hi_i)
        .fetch_all(pool)
        .await?;
        for h in hists {
            let h = HistogramRecord::try_from(h)?;
            timeline.push((h.step, Record::Histogram(h)));
        }
        let others: Vec<StepRecordRow> = sqlx::query_as(
            "SELECT kind, body FROM step_records WHERE run_id = $1 AND step >= $2 AND step < $3 \
             ORDER BY CASE kind WHEN 'image' THEN 0 WHEN 'tensor' THEN 1 ELSE 2 END, key, step",
        )
        .bind(&run)
        .bind(lo_i)
        .bind(hi_i)
        .fetch_all(pool)
        .await?;
        for r in &others {
            let rec = r.decode()?;
            let step = match &rec {
                Record::Image(i) => i.step,
                Record::Tensor(t) => t.step,
                Record::Predictions(p) => p.step,
                _ => unreachable!("step records are images, tensors or predictions"),
            };
            timeline.push((step, rec));
        }
        // Stable: within a step, scalars by key, then histograms, then the rest.
        timeline.sort_by_key(|(step, _)| *step);
        Ok(timeline.into_iter().map(|(_, r)| r).collect())
    }
}

/// Writes `batch` into run `run` inside an open write transaction, with the
/// idempotency key check.
async fn ingest_in(
    conn: &mut AnyConnection,
    run: &str,
    batch: &Batch,
    idempotency_key: Option<&str>,
    max_keys: usize,
) -> Result<IngestOutcome> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM runs WHERE id = $1")
        .bind(run)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Err(StoreError::RunNotFound);
    }
    let accepted = batch.record_count() as u64;
    if let Some(key) = idempotency_key {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (run_id, key, accepted, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id, key) DO NOTHING",
        )
        .bind(run)
        .bind(key)
        .bind(accepted as i64)
        .bind(now())
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            let before: i64 = sqlx::query_scalar(
                "SELECT accepted FROM idempotency_keys WHERE run_id = $1 AND key = $2",
            )
            .bind(run)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
            return Ok(IngestOutcome {
                accepted: before as u64,
                replayed: true,
            });
        }
    }
    write_batch(conn, run, batch, max_keys).await?;
    Ok(IngestOutcome {
        accepted,
        replayed: false,
    })
}

pub(crate) async fn write_batch(
    conn: &mut AnyConnection,
    run: &str,
    batch: &Batch,
    max_keys: usize,
) -> Result<()> {
    let mut created = false;
    for (key, points) in &batch.scalars {
        if !points.is_empty() {
            created |= write_series(conn, run, key, points).await?;
        }
    }
    if created {
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM series WHERE run_id = $1")
            .bind(run)
            .fetch_one(&mut *conn)
            .await?;
        if keys as usize > max_keys {
            return Err(StoreError::TooLarge {
                field: "key".into(),
                message: format!(
                    "keys in a run: {keys} is over the limit of {max_keys} (max_keys_per_run)"
                ),
            });
        }
    }
    for h in &batch.histograms {
        sqlx::query(
            "INSERT INTO histograms (run_id, key, step, edges, counts, nonfinite) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (run_id, key, step) DO UPDATE SET edges = excluded.edges, counts = excluded.counts, \
             nonfinite = excluded.nonfinite",
        )
        .bind(run)
        .bind(&h.key)
        .bind(h.step as i64)
        .bind(to_json(&h.edges))
        .bind(to_json(&h.counts))
        .bind(h.nonfinite as i64)
        .execute(&mut *conn)
        .await?;
    }
    if let Some(model) = &batch.model {
        sqlx::query(
            "INSERT INTO models (run_id, body) VALUES ($1, $2) ON CONFLICT (run_id) DO UPDATE SET body = excluded.body",
        )
        .bind(run)
        .bind(to_json(model))
        .execute(&mut *conn)
        .await?;
    }
    for d in &batch.datasets {
        sqlx::query(
            "INSERT INTO datasets (run_id, split, body) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id, split) DO UPDATE SET body = excluded.body",
        )
        .bind(run)
        .bind(&d.split)
        .bind(to_json(d))
        .execute(&mut *conn)
        .await?;
    }
    for i in &batch.images {
        write_step_record(conn, run, StepKind::Image, &i.key, i.step, i).await?;
    }
    for t in &batch.tensors {
        write_step_record(conn, run, StepKind::Tensor, &t.key, t.step, t).await?;
    }
    for p in &batch.predictions {
        write_step_record(conn, run, StepKind::Predictions, &p.split, p.step, p).await?;
    }
    // Last, so that on PostgreSQL the run row is locked only until commit.
    let (status, end_step) = match batch.end {
        Some((status, step)) => (Some(status.as_str().to_string()), step.map(|s| s as i64)),
        None => (None, None),
    };
    sqlx::query(
        "UPDATE runs SET updated_at = $2, changed_at = $2, data_version = data_version + 1, \
         status = COALESCE(CAST($3 AS TEXT), CASE WHEN status = 'crashed' THEN 'running' ELSE status END), \
         end_step = COALESCE($4, end_step) WHERE id = $1",
    )
    .bind(run)
    .bind(now())
    .bind(status)
    .bind(end_step)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_step_record<T: serde::Serialize>(
    conn: &mut AnyConnection,
    run: &str,
    kind: StepKind,
    key: &str,
    step: u64,
    record: &T,
) -> Result<()> {
    let json = serde_json::to_vec(record).expect("records serialise");
    let body = zstd::encode_all(&json[..], BODY_ZSTD_LEVEL)
        .map_err(|e| StoreError::Corrupt(format!("compressing a {}: {e}", kind.as_str())))?;
    sqlx::query(
        "INSERT INTO step_records (run_id, kind, key, step, bytes, body) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (run_id, kind, key, step) DO UPDATE SET bytes = excluded.bytes, body = excluded.body",
    )
    .bind(run)
    .bind(kind.as_str())
    .bind(key)
    .bind(step as i64)
    .bind(json.len() as i64)
    .bind(body)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
