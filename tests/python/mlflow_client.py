"""The real `mlflow` client against a trainlens server (MLFLOW_TRACKING_URI).

Run by tests/mlflow.rs. Asserts what the client sees, and prints, as its
last line, `RESULT {json}` with the run ids the Rust test checks further
(the stored config, the trainlens steps of stepless metrics, the diagnosis).
"""

import json
import math
import os
import sys
import time

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# Fail fast instead of retrying for minutes when something is wrong.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import mlflow  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

assert os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http"), "set MLFLOW_TRACKING_URI"
client = MlflowClient()
result = {}

# The default experiment exists.
default = client.get_experiment("0")
assert default.experiment_id == "0" and default.lifecycle_stage == "active", default

exp = mlflow.set_experiment("mlflow-client-test")
assert exp.name == "mlflow-client-test"
result["experiment_id"] = exp.experiment_id
assert mlflow.set_experiment("mlflow-client-test").experiment_id == exp.experiment_id
assert client.get_experiment_by_name("no-such-experiment") is None
assert any(e.name == "mlflow-client-test" for e in client.search_experiments())

# Experiment tags: on create, set one by one, set many, read back, search.
tagged_id = client.create_experiment("mlflow-client-tagged", tags={"team": "vision", "owner": "ci"})
client.set_experiment_tag(tagged_id, "stage", "dev")
mlflow.set_experiment("mlflow-client-tagged")
mlflow.set_experiment_tags({"stage": "prod", "dataset": "mnist"})
tagged = client.get_experiment(tagged_id)
assert tagged.tags == {"team": "vision", "owner": "ci", "stage": "prod", "dataset": "mnist"}, tagged.tags
assert client.get_experiment_by_name("mlflow-client-tagged").tags["stage"] == "prod"
found = client.search_experiments(filter_string="tags.stage = 'prod'")
assert [e.name for e in found] == ["mlflow-client-tagged"], [e.name for e in found]
client.delete_experiment_tag(tagged_id, "owner")
assert "owner" not in client.get_experiment(tagged_id).tags
try:
    client.set_experiment_tag(tagged_id, "k" * 251, "v")
    raise AssertionError("a key of 251 characters must be refused")
except MlflowException as e:
    assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code
result["tagged_experiment"] = tagged_id
mlflow.set_experiment("mlflow-client-test")

with mlflow.start_run(run_name="parent") as parent:
    pid = parent.info.run_id
    mlflow.log_param("lr", 0.1)
    mlflow.log_params({"batch_size": 64, "optimizer": "adam"})
    mlflow.log_param("lr", 0.1)  # the same value again is fine
    try:
        mlflow.log_param("lr", 0.5)
        raise AssertionError("changing a param must fail")
    except MlflowException as e:
        assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code
        assert "Changing param values is not allowed" in e.message, e.message
    mlflow.set_tag("team", "vision")
    mlflow.set_tags({"stage": "dev", "seed": 7})
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.5 + step / 10, "lr_metric": 0.1}, step=step)
    # Non-finite values, exactly.
    mlflow.log_metric("nan_metric", float("nan"), step=0)
    mlflow.log_metric("inf_metric", float("inf"), step=1)
    mlflow.log_metric("inf_metric", float("-inf"), step=2)
    # Without a step: MLflow sends step 0 each time; every value is kept.
    for i in range(5):
        mlflow.log_metric("stepless", float(i))
        time.sleep(0.003)
    # Asynchronous logging.
    ops = [mlflow.log_metric("async_m", float(i), step=i, synchronous=False) for i in range(20)]
    for op in ops:
        op.wait()
    mlflow.log_metrics({"async_batch": 1.0}, step=0, synchronous=False).wait()
    mlflow.flush_async_logging()
    with mlflow.start_run(run_name="child", nested=True) as child:
        cid = child.info.run_id
        mlflow.log_metric("x", 1.0)
    # Artifacts are refused at once with a clear message (no retry, no hang).
    t0 = time.time()
    try:
        mlflow.log_text("hello", "notes.txt")
        raise AssertionError("artifacts must be refused")
    except Exception as e:  # MlflowException or requests' HTTPError, by version
        assert "not store" in str(e) or "501" in str(e), str(e)
    assert time.time() - t0 < 10, "artifact upload took too long"
    result["artifact_error_s"] = round(time.time() - t0, 3)

run = client.get_run(pid)
assert run.info.status == "FINISHED", run.info.status
assert run.info.end_time and run.info.end_time >= run.info.start_time
assert run.info.run_name == "parent"
assert run.data.params == {"lr": "0.1", "batch_size": "64", "optimizer": "adam"}, run.data.params
assert run.data.tags["team"] == "vision" and run.data.tags["seed"] == "7", run.data.tags
assert run.data.metrics["loss"] == 0.2, run.data.metrics
assert math.isnan(run.data.metrics["nan_metric"]), run.data.metrics
assert run.data.metrics["inf_metric"] == float("-inf"), run.data.metrics
assert run.data.metrics["stepless"] == 4.0, run.data.metrics
child_run = client.get_run(cid)
assert child_run.data.tags.get("mlflow.parentRunId") == pid, child_run.data.tags
assert child_run.info.status == "FINISHED"

hist = client.get_metric_history(pid, "stepless")
assert [m.value for m in hist] == [0.0, 1.0, 2.0, 3.0, 4.0], [(m.value, m.step) for m in hist]
assert all(m.step == 0 for m in hist)
assert [m.timestamp for m in hist] == sorted(m.timestamp for m in hist)
assert [m.value for m in client.get_metric_history(pid, "async_m")] == [float(i) for i in range(20)]
assert math.isnan(client.get_metric_history(pid, "nan_metric")[0].value)
assert [m.value for m in client.get_metric_history(pid, "inf_metric")] == [float("inf"), float("-inf")]
assert client.get_metric_history(pid, "never_logged") == []

found = mlflow.search_runs(
    experiment_ids=[exp.experiment_id],
    filter_string="params.lr = '0.1' and attributes.status = 'FINISHED' and metrics.loss < 1.0",
    output_format="list",
)
assert [r.info.run_id for r in found] == [pid], [r.info.run_id for r in found]
found = client.search_runs([exp.experiment_id], "tags.team = 'vision'")
assert [r.info.run_id for r in found] == [pid]
assert len(client.search_runs([exp.experiment_id], "")) == 2
ordered = client.search_runs([exp.experiment_id], "", order_by=["attributes.start_time ASC"])
assert [r.info.run_id for r in ordered] == [pid, cid]
page = client.search_runs([exp.experiment_id], "", max_results=1)
assert len(page) == 1 and page.token, page.token
rest = client.search_runs([exp.experiment_id], "", max_results=1, page_token=page.token)
assert len(rest) == 1 and rest[0].info.run_id != page[0].info.run_id
try:
    client.search_runs([exp.experiment_id], "metrics.loss < 'a'")
    raise AssertionError("a bad filter must fail")
except MlflowException as e:
    assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code

# A Keras-named run that overfits: the training loss keeps falling, the
# validation loss turns and rises.
with mlflow.start_run(run_name="keras-overfit") as k:
    kid = k.info.run_id
    mlflow.log_params({"learning_rate": 0.001, "epochs": 40})
    for epoch in range(40):
        loss = 1.4 * math.exp(-epoch / 8) + 0.02
        val_loss = 1.35 - 0.02 * epoch if epoch < 8 else 1.19 + 0.03 * (epoch - 8)
        acc = min(0.999, 0.4 + epoch * 0.03)
        val_acc = 0.45 + 0.02 * min(epoch, 8) - 0.004 * max(0, epoch - 8)
        mlflow.log_metrics(
            {"loss": loss, "val_loss": val_loss, "accuracy": acc, "val_accuracy": val_acc},
            step=epoch,
        )

# Deleted runs leave the default view.
client.delete_run(cid)
assert len(client.search_runs([exp.experiment_id], "")) == 2  # parent and keras
client.restore_run(cid)

result.update(parent=pid, child=cid, keras=kid)
print("RESULT " + json.dumps(result))
