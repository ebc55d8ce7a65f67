//! Creating / measuring / dropping the throw-away PostgreSQL databases.

use anyhow::{Context, Result, bail};
use tokio_postgres::NoTls;

pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Hide a password, if the URL has one, in messages.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}://{}:***@{}",
                    &url[..scheme_end],
                    &userinfo[..colon],
                    &rest[at + 1..]
                );
            }
        }
    }
    url.to_string()
}

/// The same URL with its database name replaced by `db` (query kept).
pub fn with_database(url: &str, db: &str) -> Result<String> {
    let scheme_end = url.find("://").context("PostgreSQL URL has no scheme")? + 3;
    let (main, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    if main.len() < scheme_end {
        bail!("malformed PostgreSQL URL");
    }
    let authority_end = main[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(main.len());
    Ok(format!("{}/{db}{query}", &main[..authority_end]))
}

pub fn random_db_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = crate::data::XorShift64::new(nanos ^ ((std::process::id() as u64) << 32));
    format!("trainlens_bench_{:016x}", rng.next_u64())
}

pub async fn create_db(admin_url: &str, name: &str) -> Result<()> {
    let sql = format!("CREATE DATABASE \"{name}\"");
    execute(admin_url, &sql, || format!("CREATE DATABASE {name}")).await
}

pub async fn drop_db(admin_url: &str, name: &str) -> Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    execute(admin_url, &sql, || format!("DROP DATABASE {name}")).await
}

/// Runs `sql` on a new connection to `url`; `what` names it in the error.
async fn execute(url: &str, sql: &str, what: impl FnOnce() -> String) -> Result<()> {
    let c = connect(url).await?;
    c.batch_execute(sql).await.with_context(what)?;
    Ok(())
}

/// (sum of pg_total_relation_size over all user tables incl. indexes and
/// TOAST, pg_database_size) of the database at `db_url`.
pub async fn sizes(db_url: &str) -> Result<(u64, u64)> {
    let c = connect(db_url).await?;
    let row = c
        .query_one(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint, \
                    pg_database_size(current_database())::bigint \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .await
        .context("querying relation sizes")?;
    let rel: i64 = row.get(0);
    let db: i64 = row.get(1);
    Ok((rel as u64, db as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
