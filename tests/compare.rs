//! Compare and tune over HTTP, parsed as HTML: the runs table's Compare
//! form, the compare page (overlay, health, config diff, downloads) and a
//! project's hyperparameter view — on SQLite and, when configured,
//! PostgreSQL (the store's compare reads with them).

mod common;

use common::{ONLOAD, SCRIPT, TestDb, attrs, eager_runner, fetch, points, sel, texts};
use scraper::Html;
use serde_json::{Value, json};
use trainlens::model::Batch;
/// The page at `uri` (200), checked for unescaped user strings (in the
/// body as sent: a parsed document serialises text with a bare `"`).
async fn page(app: &axum::Router, uri: &str) -> Html {
    let (status, _, body) = fetch(app, uri).await;
    assert_eq!(status, 200, "{uri}: {body}");
    assert!(
        !body.contains(SCRIPT) && !body.contains("<svg onload"),
        "{uri}: a user string reached the page unescaped"
    );
    Html::parse_document(&body)
}

/// A series to seed: its key, its number of steps from 0, its value at a step.
type Series<'a> = (&'a str, u64, &'a dyn Fn(u64) -> f64);

/// A run of `project` with `config` and series `key → f(step)` over `steps`.
async fn seed(
    db: &TestDb,
    project: &str,
    name: &str,
    config: Value,
    series: &[Series<'_>],
) -> uuid::Uuid {
    let run = db.create_run(project, name, config).await;
    let mut b = Batch::default();
    for (key, steps, f) in series {
        b.scalars.insert(key.to_string(), points(0..*steps, f));
    }
    if !b.scalars.is_empty() {
        db.store.ingest(run, &b, None).await.unwrap();
    }
    run
}

on_both_backends! {
    async fn the_compare_page_overlays_diffs_and_shows_health(db: &TestDb) {
        let app = db.app();
        // A diverges (NaN from step 5000, over two chunks); B is healthy and
        // logs a metric with a hostile name; C has no config and no series.
        let a = seed(
            db,
            "cmp",
            SCRIPT,
            json!({"lr": 0.1, "opt": "adam", "batch": 32, "note": ONLOAD}),
            &[
                ("train/loss", 6000, &|s| if s >= 5000 { f64::NAN } else { 2.0 - s as f64 / 5000.0 }),
                ("val/loss", 6000, &|s| if s >= 5000 { f64::NAN } else { 2.2 - s as f64 / 5000.0 }),
            ],
        )
        .await;
        let b = seed(
            db,
            "cmp",
            ONLOAD,
            json!({"lr": 1e-3, "opt": "adam", "batch": 32.0, "<script>k": "v"}),
            &[
                ("val/loss", 3000, &|s| 1.5 - s as f64 / 6000.0),
                (ONLOAD, 100, &|s| s as f64),
            ],
        )
        .await;
        let c = seed(db, "cmp", "empty", json!({}), &[]).await;
        eager_runner(&db.store, "http://t").tick().await.unwrap();

        // The runs table: a checkbox per run in one Compare form.
        let doc = page(&app, "/?project=cmp").await;
        assert_eq!(attrs(&doc, "form#compare", "action"), ["/compare"]);
        let mut boxes = attrs(&doc, "table.runs td.name input[type=checkbox][form=compare][name=run]", "value");
        boxes.sort();
        let mut ids = vec![a.to_string(), b.to_string(), c.to_string()];
        ids.sort();
        assert_eq!(boxes, ids);
        assert_eq!(attrs(&doc, "form#compare a", "href"), ["/projects/cmp/params"]);

        // The store reads: in the order asked, unknown ids left out.
        let ghost = uuid::Uuid::new_v4();
        let runs = db.store.runs_by_ids(&[b, ghost, a]).await.unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [b, a]);
        assert!(runs[1].config.is_some(), "with the config");

        let uri = format!("/compare?run={a}&run={b}&run={c}&run={ghost}");
        let doc = page(&app, &uri).await;
        assert_eq!(
            texts(&doc, "table.compared tbody td.name > a"),
            [SCRIPT, ONLOAD, "empty"],
            "the runs in the order picked"
        );
        assert_eq!(texts(&doc, "p.muted").iter().filter(|t| t.contains("no longer exists")).count(), 1);
        let health = texts(&doc, "table.compared tbody td.health");
        assert!(health[0].starts_with("critical"), "{health:?}");
        assert!(health[1].starts_with("ok") && health[2].starts_with("ok"));
        assert_eq!(texts(&doc, "table.compared tbody tr:first-child td.health ul.run-findings .kind")[0], "divergence");
        // The swatches' colours are distinct.
        let colours = attrs(&doc, "table.compared td.name .swatch", "style");
        assert_eq!(colours.len(), 3);
        assert!(colours[0] != colours[1] && colours[1] != colours[2]);

        // The default overlay: the validation loss of the two runs with it.
        let selected = texts(&doc, "select[name=key] option[selected]");
        assert_eq!(selected, ["val/loss"]);
        let keys = texts(&doc, "select[name=key] option");
        assert_eq!(keys.len(), 3, "the union of the runs' keys: {keys:?}");
        assert!(keys.contains(&ONLOAD.to_string()) && keys.contains(&"train/loss".to_string()));
        let svg = doc.select(&sel("figure#chart-compare svg")).next().expect("the overlay").html();
        assert!(svg.contains("<title>val/loss</title>"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && svg.contains("\"&gt;&lt;svg onload"),
            "both runs in the legend, escaped");
        assert!(svg.contains("NaN / Inf"), "A's NaNs are marked, not dropped");
        assert_eq!(texts(&doc, "table.compared tbody td.num:nth-child(5)")[0], "NaN", "A's last val/loss");
        assert!(texts(&doc, "p.muted").iter().any(|t| t == "Not logged by empty."));
        // The form keeps the runs picked.
        assert_eq!(attrs(&doc, "form.compare-controls input[name=run]", "value").len(), 3);

        // C sets nothing, so with it every parameter differs.
        assert_eq!(texts(&doc, "table.diff tbody tr.differs").len(), 5);
        assert!(attrs(&doc, "#params p.muted a", "href").is_empty(), "nothing more to show");

        // A and B: only what differs (lr, note, <script>k); 32 and 32.0 alike.
        let doc = page(&app, &format!("/compare?run={a}&run={b}")).await;
        let rows = texts(&doc, "table.diff tbody td.param");
        assert_eq!(rows, ["lr", "note", "<script>k"]);
        assert_eq!(texts(&doc, "table.diff tbody tr:first-child td")[1..], ["0.1", "0.001"]);
        assert_eq!(texts(&doc, "table.diff tbody tr:nth-child(2) td")[1..], [ONLOAD, "—"], "B has no note");
        let toggle = attrs(&doc, "#params p.muted a", "href");
        assert_eq!(toggle.len(), 1);
        let doc = page(&app, &toggle[0].replace("#params", "")).await;
        assert_eq!(texts(&doc, "table.diff tbody td.param"), ["lr", "opt", "batch", "note", "<script>k"]);
        assert_eq!(texts(&doc, "table.diff tbody tr.differs td.param"), ["lr", "note", "<script>k"]);
        assert_eq!(attrs(&doc, "form.compare-controls input[name=all]", "value"), ["1"]);

        // Another key: only B has it, A and C are named as without it.
        let k = form_urlencoded::byte_serialize(ONLOAD.as_bytes()).collect::<String>();
        let doc = page(&app, &format!("/compare?run={a}&run={b}&key={k}&x=time&smooth=0")).await;
        let svg = doc.select(&sel("figure#chart-compare svg")).next().unwrap().html();
        assert!(svg.contains("\"&gt;&lt;svg onload=alert(1)&gt;</title>"));
        assert!(svg.contains("no time axis"), "points without timestamps stay on steps");
        assert!(texts(&doc, "p.muted").iter().any(|t| t.starts_with("Not logged by") && t.contains(SCRIPT)));
        let doc = page(&app, &format!("/compare?run={a}&run={b}&key=nope")).await;
        assert!(doc.select(&sel("figure#chart-compare svg")).next().is_none());
        assert!(texts(&doc, "figure.chart-empty p")[0].starts_with("None of these runs logged nope"));
        let doc = page(&app, &format!("/compare?run={c}")).await;
        assert!(texts(&doc, "#overlay p.empty")[0].starts_with("None of these runs logged a scalar yet"));
        assert!(texts(&doc, "#params p.empty")[0].starts_with("None of these runs has a config"));

        // Downloads: the points drawn, a run per block of rows.
        let (status, headers, csv) = fetch(&app, &format!("/compare/chart.csv?run={a}&run={b}&key=val%2Floss")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("run_id,run_name,key,step,time,value"));
        let rows: Vec<&str> = lines.collect();
        assert!(rows.iter().any(|r| r.starts_with(&format!("{a},"))) && rows.iter().any(|r| r.starts_with(&format!("{b},"))));
        assert!(rows.iter().any(|r| r.ends_with(",NaN")), "NaN kept");
        assert!(rows.len() <= 4 * 800, "an envelope read, not every point: {}", rows.len());
        let (status, headers, svg) = fetch(&app, &format!("/compare/chart.svg?run={a}&run={b}")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/svg+xml; charset=utf-8");
        assert!(svg.starts_with("<svg") && svg.contains("<title>val/loss</title>") && !svg.contains(SCRIPT));
        assert_eq!(fetch(&app, &format!("/compare/chart.svg?run={c}")).await.0, 404);

        // Bad input.
        let (status, _, body) = fetch(&app, "/compare?run=nope").await;
        assert_eq!(status, 400);
        assert!(body.contains("is not a run id"), "{body}");
        let (status, _, body) = fetch(&app, &format!("/compare?run={a}&color=red")).await;
        assert_eq!(status, 400);
        assert!(body.contains("color"), "{body}");
        assert_eq!(fetch(&app, &format!("/compare?run={a}&smooth=7")).await.0, 400);
        assert_eq!(fetch(&app, &format!("/compare?run={ghost}")).await.0, 404);
        let many: String = (0..13).map(|_| format!("run={}&", uuid::Uuid::new_v4())).collect();
        let (status, _, body) = fetch(&app, &format!("/compare?{many}")).await;
        assert_eq!(status, 400);
        assert!(body.contains("at most 12"), "{body}");
        // Nothing picked: what to do.
        let doc = page(&app, "/compare").await;
        assert!(texts(&doc, "p.empty")[0].starts_with("No run picked"));
    }

    async fn the_hyperparameter_view_relates_each_parameter_to_the_metric(db: &TestDb) {
        let app = db.app();
        // 10 runs: the validation loss rises with the learning rate (so ρ =
        // +1), adam beats sgd at the same rate, the batch size is the same
        // everywhere, a seed is set in some runs only, a hostile key and value.
        for i in 0..10u32 {
            let lr = 1e-4 * 3f64.powi(i as i32);
            let opt = if i % 2 == 0 { "adam" } else { "sgd" };
            let mut config = json!({"lr": lr, "opt": opt, "batch": 64});
            config[ONLOAD] = json!(if i < 5 { SCRIPT } else { "x" });
            if i < 4 {
                config["seed"] = json!(i);
            }
            let best = 0.2 + f64::from(i) * 0.1;
            // Two chunks, a NaN in the first: the lowest value is finite.
            seed(
                db,
                "tune",
                &format!("run-{i}"),
                config,
                &[
                    ("val/loss", 5000, &move |s| if s == 100 { f64::NAN } else { best + 1.0 / (1.0 + s as f64) }),
                    ("val/acc", 50, &move |s| 0.9 - best / 2.0 + s as f64 * 1e-4),
                ],
            )
            .await;
        }
        // Runs without the metric, and with it NaN throughout.
        seed(db, "tune", "no-metric", json!({"lr": 0.5}), &[("train/loss", 10, &|_| 1.0)]).await;
        seed(db, "tune", "all-nan", json!({"lr": 0.7}), &[("val/loss", 10, &|_| f64::NAN)]).await;

        let summaries = db.store.metric_summaries("tune").await.unwrap();
        assert_eq!(summaries.len(), 12);
        let nan_run = summaries
            .values()
            .flatten()
            .find(|s| s.key == "val/loss" && s.last.is_some_and(f64::is_nan))
            .expect("the all-NaN run");
        assert_eq!((nan_run.min, nan_run.max), (None, None));

        let doc = page(&app, "/projects/tune/params").await;
        assert_eq!(texts(&doc, "select[name=metric] option[selected]"), ["lowest val/loss"]);
        let options = attrs(&doc, "select[name=metric] option", "value");
        assert!(options.contains(&"last:val/acc".to_string()) && options.contains(&"min:train/loss".to_string()));
        let counts = texts(&doc, "p.muted")
            .into_iter()
            .find(|t| t.contains(" of 12 runs have"))
            .unwrap();
        assert!(counts.starts_with("10 of 12 runs have lowest val/loss; 2 without it are left out"), "{counts}");

        let params = texts(&doc, "table.relations tbody td.param");
        assert_eq!(params[0], "lr", "the strongest first: {params:?}");
        let first = texts(&doc, "table.relations tbody tr:first-child td");
        assert!(first[2].contains("ρ = +1.00"), "{first:?}");
        assert_eq!(first[3], "10");
        assert_eq!(first[4], "higher lr, higher val/loss");
        let opt_row = doc
            .select(&sel("table.relations tbody tr"))
            .find(|r| r.text().collect::<String>().contains("opt"))
            .unwrap();
        let opt_text = opt_row.text().collect::<String>();
        assert!(opt_text.contains("η = ") && opt_text.contains("adam best"), "{opt_text}");
        let unreported = texts(&doc, "table.relations tbody tr.unreported td.param");
        assert!(unreported.contains(&"batch".to_string()), "{unreported:?}");
        let seed_row = texts(&doc, "table.relations tbody tr")
            .into_iter()
            .find(|t| t.starts_with("seed"))
            .unwrap();
        assert!(seed_row.contains("few"), "4 runs set a seed: {seed_row}");
        assert!(params.contains(&ONLOAD.to_string()));

        // The parallel coordinates: a line per run with the metric, escaped.
        let svg = doc.select(&sel("figure#chart-parallel svg")).next().expect("the chart").html();
        assert_eq!(svg.matches("<g class=\"run\"").count(), 10);
        assert!(svg.contains("<title>tune: hyperparameters against lowest val/loss</title>"));
        assert!(svg.contains("\"&gt;&lt;svg onload") && !svg.contains("<svg onload"));
        // The best runs: the lowest loss first, its minimum the finite one.
        let best = texts(&doc, "table.best tbody td.name a");
        assert_eq!(best[..3], ["run-0", "run-1", "run-2"]);
        let value: f64 = texts(&doc, "table.best tbody td.num")[0].parse().unwrap();
        assert!((value - (0.2 + 1.0 / 5000.0)).abs() < 1e-3, "{value}");
        assert_eq!(attrs(&doc, "table.best input[checked]", "name").len(), 3);

        // The final accuracy: higher is better, the ranking flips.
        let doc = page(&app, "/projects/tune/params?metric=last%3Aval%2Facc").await;
        assert_eq!(texts(&doc, "select[name=metric] option[selected]"), ["last val/acc"]);
        assert!(texts(&doc, "table.relations tbody tr:first-child td")[2].contains("ρ = -1.00"));
        assert_eq!(texts(&doc, "table.best tbody td.name a")[0], "run-0");

        // Bad input, an unknown project, a project with nothing to rank by.
        let (status, _, body) = fetch(&app, "/projects/tune/params?metric=median%3Aval%2Floss").await;
        assert_eq!(status, 400);
        assert!(body.contains("median"), "{body}");
        assert_eq!(fetch(&app, "/projects/tune/params?metrics=x").await.0, 400);
        assert_eq!(fetch(&app, "/projects/nope/params").await.0, 404);
        seed(db, SCRIPT, "plain", json!({"lr": 1}), &[("lr", 10, &|_| 0.1)]).await;
        let p = form_urlencoded::byte_serialize(SCRIPT.as_bytes()).collect::<String>();
        let doc = page(&app, &format!("/projects/{p}/params")).await;
        assert!(texts(&doc, "p.empty")[0].starts_with("No run of <script>alert(1)</script> logged a metric"));
        // A metric no run has: said so, nothing drawn.
        let doc = page(&app, "/projects/tune/params?metric=min%3Anope").await;
        assert!(texts(&doc, "p.empty")[0].starts_with("No run has a finite lowest nope"));
    }
}
