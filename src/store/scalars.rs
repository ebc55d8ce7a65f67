//! Scalar series, stored as compressed chunks by step range ([`chunk`]):
//! every write merges into the chunks it touches, so re-sending a (run, key,
//! step) replaces the point instead of duplicating it.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, FromRow};
use uuid::Uuid;

use super::{Result, Store, StoreError, chunk, placeholders};
use crate::charts::downsample;
use crate::model::{Point, Sampled, SeriesInfo};
use crate::record::Value;

/// Chunks with more points than this also store their envelope, so that a
/// downsampled read of a long series need not decode them.
const SUMMARY_MIN_POINTS: usize = 32;

/// `SELECT $columns` of the chunks of a series over a step range, by chunk
/// (binds: series id, from, to), for [`Store::chunk_rows`].
macro_rules! chunks_in_range {
    ($columns:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM scalar_chunks WHERE series_id = $1 AND max_step >= $2 AND min_step <= $3 ORDER BY chunk"
        )
    };
}
const POINTS_SQL: &str = chunks_in_range!("chunk, data");
const RANGE_SQL: &str = chunks_in_range!("n, min_step, max_step, data");
const ENVELOPES_SQL: &str = chunks_in_range!("n, min_step, max_step, summary");

#[derive(FromRow)]
struct SeriesRow {
    key: String,
    count: i64,
    first_step: Option<i64>,
    last_step: Option<i64>,
    last_value: Option<Vec<u8>>,
}

try_from_row!(SeriesRow => SeriesInfo, |r| {
    Ok(SeriesInfo {
        key: r.key,
        count: r.count,
        first_step: r.first_step.map(|s| s as u64),
        last_step: r.last_step.map(|s| s as u64),
        last_value: r
            .last_value
            .as_deref()
            .map(f64_from_blob)
            .transpose()?
            .map(Value),
    })
});

/// A chunk as listed for a downsampled read.
#[derive(FromRow)]
struct ChunkMeta {
    n: i64,
    min_step: i64,
    max_step: i64,
    summary: Option<Vec<u8>>,
}

#[derive(FromRow)]
struct ChunkData {
    chunk: i64,
    data: Vec<u8>,
}

#[derive(FromRow)]
struct RangeChunk {
    n: i64,
    min_step: i64,
    max_step: i64,
    data: Vec<u8>,
}

/// The stored chunks of one series over a step range, still compressed —
/// what a streamed full read holds (the stored size, a few bytes a point,
/// not the tens a decoded point and its JSON take) — read in one statement,
/// so a consistent snapshot however often it is decoded.
pub struct StoredRange {
    chunks: Vec<RangeChunk>,
    from: u64,
    to: u64,
    /// Points in the range.
    pub total: usize,
}

impl StoredRange {
    /// All the points at once, in step order.
    pub fn points(&self) -> Result<Vec<Point>> {
        let mut points = Vec::with_capacity(self.total);
        for c in &self.chunks {
            chunk::decode_into(&c.data, &mut points)?;
        }
        points.retain(|p| p.step >= self.from && p.step <= self.to);
        Ok(points)
    }

    /// The points, a decoded chunk at a time, in step order; each call
    /// decodes afresh.
    pub fn chunks(&self) -> impl Iterator<Item = Result<Vec<Point>>> + '_ {
        self.chunks.iter().map(|c| {
            let mut points = chunk::decode(&c.data)?;
            points.retain(|p| p.step >= self.from && p.step <= self.to);
            Ok(points)
        })
    }
}

#[derive(FromRow)]
struct SeriesHead {
    id: i64,
    count: i64,
    first_step: Option<i64>,
    last_step: Option<i64>,
}

#[derive(FromRow)]
struct StoredChunk {
    chunk: i64,
    n: i64,
    data: Vec<u8>,
}

impl Store {
    pub async fn series(&self, run: Uuid) -> Result<Vec<SeriesInfo>> {
        const SQL: &str = "SELECT key, count, first_step, last_step, last_value FROM series WHERE run_id = $1 ORDER BY key";
        let rows: Vec<SeriesRow> = self.run_rows(SQL, run).await?;
        rows.into_iter().map(SeriesInfo::try_from).collect()
    }

    /// The series `key` of `run` and the step range clamped by
    /// [`step_range`]; `None` when the run has no such series.
    async fn locate(
        &self,
        run: Uuid,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Option<(i64, u64, u64)>> {
        let (from, to) = step_range(from, to);
        Ok(self.series_id(run, key).await?.map(|id| (id, from, to)))
    }

    /// The rows of `sql` — `SELECT … FROM scalar_chunks WHERE series_id = $1
    /// AND max_step >= $2 AND min_step <= $3 …` — for one series and range.
    async fn chunk_rows<T>(
        &self,
        sql: &'static str,
        series: i64,
        from: u64,
        to: u64,
    ) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        Ok(sqlx::query_as(sql)
            .bind(series)
            .bind(from as i64)
            .bind(to as i64)
            .fetch_all(self.pool())
            .await?)
    }

    async fn series_id(&self, run: Uuid, key: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM series WHERE run_id = $1 AND key = $2")
                .bind(run.to_string())
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The points of one series with `from <= step <= to`, by step; `None`
    /// when the run has no such series.
    pub async fn points(
        &self,
        run: Uuid,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Option<Vec<Point>>> {
        let Some((series_id, from, to)) = self.locate(run, key, from, to).await? else {
            return Ok(None);
        };
        let rows: Vec<ChunkData> = self.chunk_rows(POINTS_SQL, series_id, from, to).await?;
        let mut points = Vec::new();
        for row in &rows {
            chunk::decode_into(&row.data, &mut points)?;
        }
        points.retain(|p| p.step >= from && p.step <= to);
        Ok(Some(points))
    }

    /// The stored chunks of one series with `from <= step <= to`, for a
    /// read that streams its answer; `None` when the run has no such series.
    pub async fn stored_range(
        &self,
        run: Uuid,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Option<StoredRange>> {
        let Some((series_id, from, to)) = self.locate(run, key, from, to).await? else {
            return Ok(None);
        };
        let chunks: Vec<RangeChunk> = self.chunk_rows(RANGE_SQL, series_id, from, to).await?;
        let mut total = 0;
        for c in &chunks {
            total += if c.min_step as u64 >= from && c.max_step as u64 <= to {
                c.n as usize
            } else {
                // A chunk cut by the range: count what is inside.
                chunk::decode(&c.data)?
                    .iter()
                    .filter(|p| p.step >= from && p.step <= to)
                    .count()
            };
        }
        Ok(Some(StoredRange {
            chunks,
            from,
            to,
            total,
        }))
    }

    /// The points of one series with `from <= step <= to`, downsampled to
    /// about `max_points` by [`downsample`]'s min/max envelope; `None` when
    /// the run has no such series.
    ///
    /// When the buckets are at least about a chunk wide, whole chunks are
    /// read from their stored envelopes and only the chunks cut by the range
    /// (or too small to have an envelope) are decoded.
    pub async fn downsampled(
        &self,
        run: Uuid,
        key: &str,
        from: Option<u64>,
        to: Option<u64>,
        max_points: usize,
    ) -> Result<Option<Sampled>> {
        let Some((series_id, from, to)) = self.locate(run, key, from, to).await? else {
            return Ok(None);
        };
        let rows: Vec<ChunkMeta> = self.chunk_rows(ENVELOPES_SQL, series_id, from, to).await?;
        let (Some(first_row), Some(last_row)) = (rows.first(), rows.last()) else {
            return Ok(Some(Sampled {
                total: 0,
                points: Vec::new(),
            }));
        };
        let first = from.max(first_row.min_step as u64);
        let last = to.min(last_row.max_step as u64);
        let stored: usize = rows.iter().map(|r| r.n as usize).sum();
        let (_, raw_width) = downsample::buckets(first, last, max_points, 1);
        if stored <= max_points || raw_width < chunk::CHUNK_STEPS * 3 / 4 {
            let points = self
                .points(run, key, Some(from), Some(to))
                .await?
                .unwrap_or_default();
            let total = points.len();
            return Ok(Some(Sampled {
                total,
                points: downsample::downsample(&points, max_points),
            }));
        }

        // Whole chunks with an envelope contribute it; the others are decoded.
        let mut pieces: BTreeMap<i64, Vec<Point>> = BTreeMap::new();
        let mut total = 0usize;
        for r in &rows {
            if let Some(blob) = &r.summary
                && r.min_step as u64 >= from
                && r.max_step as u64 <= to
            {
                total += r.n as usize;
                pieces.insert(chunk::chunk_of(r.min_step as u64), chunk::decode(blob)?);
            }
        }
        let rows: Vec<ChunkData> = sqlx::query_as(
            "SELECT chunk, data FROM scalar_chunks WHERE series_id = $1 AND max_step >= $2 AND min_step <= $3 \
             AND (summary IS NULL OR min_step < $2 OR max_step > $3)",
        )
        .bind(series_id)
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let mut points = chunk::decode(&r.data)?;
            points.retain(|p| p.step >= from && p.step <= to);
            total += points.len();
            pieces.insert(r.chunk, points);
        }
        let points: Vec<Point> = pieces.into_values().flatten().collect();
        let (origin, width) = downsample::buckets(first, last, max_points, chunk::CHUNK_STEPS);
        Ok(Some(Sampled {
            total,
            points: downsample::downsample_by_width(&points, origin, width),
        }))
    }
}

#[derive(FromRow)]
struct RunSeriesRow {
    run_id: String,
    #[sqlx(flatten)]
    series: SeriesRow,
}

#[derive(FromRow)]
struct SparkChunk {
    run_id: String,
    summary: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
}

/// Series with at most this many chunks are read from their points for a
/// sparkline; longer ones from their chunks' envelopes (a handful of points
/// a chunk), so a sparkline costs at most this many chunks' decoding.
const SPARK_RAW_CHUNKS: i64 = 2;

impl Store {
    /// The series of each of `runs` (by key), in one statement.
    pub async fn series_of_runs(&self, runs: &[Uuid]) -> Result<HashMap<Uuid, Vec<SeriesInfo>>> {
        let mut out: HashMap<Uuid, Vec<SeriesInfo>> = HashMap::new();
        if runs.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT run_id, key, count, first_step, last_step, last_value FROM series \
             WHERE run_id IN ({}) ORDER BY run_id, key",
            placeholders(1, runs.len())
        );
        let mut query = sqlx::query_as::<_, RunSeriesRow>(sqlx::AssertSqlSafe(sql));
        for r in runs {
            query = query.bind(r.to_string());
        }
        for row in query.fetch_all(self.pool()).await? {
            let run = super::parse_uuid(&row.run_id)?;
            out.entry(run).or_default().push(row.series.try_into()?);
        }
        Ok(out)
    }

    /// A sparkline's points for each `(run, key)`: at most about
    /// `max_points` per run (the min/max envelope, so spikes and NaNs stay),
    /// read in one statement from the chunks' stored envelopes — only short
    /// series are decoded.
    pub async fn sparklines(
        &self,
        series: &[(Uuid, &str)],
        max_points: usize,
    ) -> Result<HashMap<Uuid, Vec<Point>>> {
        let mut out: HashMap<Uuid, Vec<Point>> = HashMap::new();
        if series.is_empty() {
            return Ok(out);
        }
        let pairs: Vec<String> = (0..series.len())
            .map(|i| format!("(s.run_id = ${} AND s.key = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "SELECT s.run_id, c.summary, \
             CASE WHEN c.summary IS NULL OR COUNT(*) OVER (PARTITION BY c.series_id) <= {SPARK_RAW_CHUNKS} \
             THEN c.data END AS data \
             FROM series s JOIN scalar_chunks c ON c.series_id = s.id WHERE {} ORDER BY s.run_id, c.chunk",
            pairs.join(" OR ")
        );
        let mut query = sqlx::query_as::<_, SparkChunk>(sqlx::AssertSqlSafe(sql));
        for (run, key) in series {
            query = query.bind(run.to_string()).bind(key.to_string());
        }
        let mut raw: HashMap<Uuid, Vec<Point>> = HashMap::new();
        for row in query.fetch_all(self.pool()).await? {
            let run = super::parse_uuid(&row.run_id)?;
            let points = raw.entry(run).or_default();
            match (&row.data, &row.summary) {
                (Some(data), _) => chunk::decode_into(data, points)?,
                (None, Some(summary)) => chunk::decode_into(summary, points)?,
                (None, None) => {}
            }
        }
        for (run, points) in raw {
            out.insert(run, downsample::downsample(&points, max_points));
        }
        Ok(out)
    }
}

/// Merges `points` (arrival order) into the series' chunks; true when the
/// series is new.
pub(crate) async fn write_series(
    conn: &mut AnyConnection,
    run: &str,
    key: &str,
    points: &[Point],
) -> Result<bool> {
    let mut new = points.to_vec();
    new.sort_by_key(|p| p.step); // stable: the last of equal steps stays last
    let head: SeriesHead = sqlx::query_as(
        "INSERT INTO series (run_id, key) VALUES ($1, $2) \
         ON CONFLICT (run_id, key) DO UPDATE SET key = excluded.key \
         RETURNING id, count, first_step, last_step",
    )
    .bind(run)
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    let mut count = head.count;
    // Series are only created here, with points: an empty one is new.
    let created = head.first_step.is_none();

    let lo = chunk::chunk_of(new[0].step);
    let hi = chunk::chunk_of(new[new.len() - 1].step);
    let rows: Vec<StoredChunk> = sqlx::query_as(
        "SELECT chunk, n, data FROM scalar_chunks WHERE series_id = $1 AND chunk >= $2 AND chunk <= $3",
    )
    .bind(head.id)
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut *conn)
    .await?;
    let existing: HashMap<i64, StoredChunk> = rows.into_iter().map(|r| (r.chunk, r)).collect();

    let mut start = 0;
    while start < new.len() {
        let c = chunk::chunk_of(new[start].step);
        let end = start
            + new[start..]
                .iter()
                .take_while(|p| chunk::chunk_of(p.step) == c)
                .count();
        let (old_n, old_points) = match existing.get(&c) {
            Some(stored) => (stored.n, chunk::decode(&stored.data)?),
            None => (0, Vec::new()),
        };
        let merged = chunk::merge(&old_points, &new[start..end]);
        let st = chunk::stats(&merged);
        let summary = (merged.len() > SUMMARY_MIN_POINTS).then(|| {
            let mut env = Vec::new();
            downsample::envelope(&merged, &mut env);
            chunk::encode(&env)
        });
        sqlx::query(
            "INSERT INTO scalar_chunks \
             (series_id, chunk, n, min_step, max_step, min_value, max_value, nonfinite, data, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (series_id, chunk) DO UPDATE SET n = excluded.n, min_step = excluded.min_step, \
             max_step = excluded.max_step, min_value = excluded.min_value, max_value = excluded.max_value, \
             nonfinite = excluded.nonfinite, data = excluded.data, summary = excluded.summary",
        )
        .bind(head.id)
        .bind(c)
        .bind(st.n)
        .bind(st.min_step)
        .bind(st.max_step)
        // No finite value: NaN, never a NULL f64 — sqlx 0.9's Any driver
        // declares a NULL f64 as float4 on PostgreSQL, which poisons the
        // cached statement for the next non-NULL value. SQLite stores NaN as NULL.
        .bind(st.min_value.unwrap_or(f64::NAN))
        .bind(st.max_value.unwrap_or(f64::NAN))
        .bind(st.nonfinite)
        .bind(chunk::encode(&merged))
        .bind(summary)
        .execute(&mut *conn)
        .await?;
        count += st.n - old_n;
        start = end;
    }

    let newest = new[new.len() - 1];
    let first = head
        .first_step
        .map_or(new[0].step as i64, |f| f.min(new[0].step as i64));
    let (last, last_value) = match head.last_step {
        Some(l) if l > newest.step as i64 => (l, None),
        _ => (
            newest.step as i64,
            Some(newest.value.to_le_bytes().to_vec()),
        ),
    };
    sqlx::query(
        "UPDATE series SET count = $2, first_step = $3, last_step = $4, last_value = COALESCE($5, last_value), \
         last_real = CASE WHEN $5 IS NULL THEN last_real WHEN $6 > 1.79e308 OR $6 < -1.79e308 THEN NULL ELSE $6 END \
         WHERE id = $1",
    )
    .bind(head.id)
    .bind(count)
    .bind(first)
    .bind(last)
    .bind(last_value)
    // Never a NULL f64 (see above): a non-finite value becomes NULL in SQL
    // (PostgreSQL's NaN compares greater than every number; SQLite already
    // stores NaN as NULL).
    .bind(newest.value)
    .execute(&mut *conn)
    .await?;
    Ok(created)
}

/// An inclusive step range with defaults, within what steps can be.
pub(crate) fn step_range(from: Option<u64>, to: Option<u64>) -> (u64, u64) {
    let max = i64::MAX as u64;
    (from.unwrap_or(0).min(max), to.unwrap_or(max).min(max))
}

pub(crate) fn f64_from_blob(b: &[u8]) -> Result<f64> {
    let bytes: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("last_value is not 8 bytes".into()))?;
    Ok(f64::from_le_bytes(bytes))
}
