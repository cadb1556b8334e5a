"""The MLflow UI as a quant reads a training run, in headless Chromium.

A real ``mlflow server`` runs on loopback the way the chart starts it (``--serve-artifacts`` with the artifacts
in the bucket; SQLite instead of PostgreSQL), and the project's own code logs into it: ``run_training`` trains one
variant on real daily S&P 500 bars (the bundled 1999-2018 series, through the real silver and gold builders) and
logs figures, report, metrics, input example and the gold table as input dataset; ``select_champion`` registers
the champion with its verdict. The tests then read what the pages say, from the DOM: the run page (the verdict
tag, the validation and out-of-time intervals beside the baselines, the gold table with its S3 source), each
figure as an image artifact, and the registered version (its verdict, and the link back to its run). Screenshots
for the README: ``mlflow-run.png`` and ``mlflow-figure.png`` (``tests.support.screenshot_dir``).

What this cannot catch: the chart's PostgreSQL backend store and the server behind a Service (the chart's own
command runs in tests/cluster/test_render.py; the node tier sees the pod answer), and the KFP UI (no KFP backend
here; the compiled pipeline's artifact chain is checked in tests/cluster/test_artifacts.py).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from spx.components.gold.merge import build_gold
from spx.components.gold.stage import features_parquet
from spx.components.selection.select import CREDIBLE, NO_EDGE, select_champion
from spx.components.silver.microstructure import microstructure_features
from spx.components.silver.technical import technical_features
from spx.components.silver.volatility import volatility_features
from spx.components.training.kfp_outputs import MODEL_METADATA
from spx.components.training.train import TrainConfig, run_training
from spx.components.training.variants import VariantSpec
from spx.core.processes import ManagedProcess, free_port
from spx.core.settings import settings
from tests.envs import isolated_spx_env
from tests.spine.helpers import real_bars
from tests.support import screenshot_dir, venv_tool

from .test_html_render import CHROMIUM, needs_chromium

pytestmark = [pytest.mark.integration, needs_chromium]

RUN = "mlflow-ui"
SPEC = VariantSpec("xgb_base_h1", "xgboost", "classification", "base", 1)
FIGURES = ("roc", "calibration", "importance", "equity")
INTERVALS = MODEL_METADATA  # both AUCs, their intervals and the baselines: what the KFP Model states too
# MLflow 3.17's UI opens its (LLM) assistant panel on a first visit; a person closes it once and the UI remembers
# that in localStorage. Set before the app's scripts run (Page.addScriptToEvaluateOnNewDocument).
ASSISTANT_CLOSED = (
    "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
    "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
)
WAIT = 90  # seconds for a page's data to show (the UI's bundle is 27 MB; a busy 2-core box is slow)


@pytest.fixture(scope="module")
def tracked(s3_server, tmp_path_factory):
    """The MLflow server, and one training run + registration logged into it by the project's code."""
    tmp = tmp_path_factory.mktemp("mlflow-ui")
    mp, store = isolated_spx_env(s3_server, tmp / "home", "mlflow-ui")
    mp.setenv("SPX_REGISTERED_MODEL", "spx-direction")  # the module's own server: the product's name
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ManagedProcess(
        "mlflow",
        [
            venv_tool("mlflow") or "mlflow",
            *("server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}"),
            *("--serve-artifacts", "--artifacts-destination", f"s3://{store.bucket}/mlflow"),
        ],
        tmp / "mlflow.log",
        ready_url=f"{url}/health",
        ready_timeout=300,  # MLflow takes 10-80 s on a busy 2-core box
    )
    server.start()
    try:
        mp.setenv("MLFLOW_TRACKING_URI", url)
        bar = pd.Timedelta(days=1)
        bars = real_bars()
        silver = [technical_features(bars), microstructure_features(bars), volatility_features(bars, bar)]
        gold, manifest = build_gold(bars, silver, bar=bar, horizons=[1], instrument="SPX")
        gold_uri = store.put_bytes(f"gold/{RUN}/features.parquet", features_parquet(gold)).uri
        manifest_uri = store.put_json(f"gold/{RUN}/manifest.json", manifest).uri
        cfg = settings()
        summary = run_training(
            store,
            gold_uri=gold_uri,
            manifest_uri=manifest_uri,
            spec=SPEC,
            run_id=RUN,
            cfg=TrainConfig(n_folds=2, n_boot=100),
            settings=cfg,
            progress=lambda s: None,
        )
        _, selection = select_champion(
            store,
            run_id=RUN,
            expected_variants=[SPEC.name],
            min_oot_auc=0.0,
            max_overfit_gap=1.0,
            registered_model=cfg.registered_model,
            tracking_uri=url,
            progress=lambda s: None,
        )
        yield {
            "url": url,
            "tmp": tmp,
            "store": store,
            "summary": summary,
            "selection": selection,
            "gold_uri": gold_uri,
            "gold_rows": len(gold),
            "run_page": f"{url}/#/experiments/{summary['experiment_id']}/runs/{summary['mlflow_run_id']}",
        }
    finally:
        server.stop()
        mp.undo()


@pytest.fixture(scope="module")
def page(tracked):
    from .cdp import Browser

    with Browser(CHROMIUM, tracked["tmp"] / "chromium", width=1400, height=1100) as browser:
        browser.send("Page.enable")  # addScriptToEvaluateOnNewDocument needs the Page domain
        browser.send("Page.addScriptToEvaluateOnNewDocument", source=ASSISTANT_CLOSED)
        yield browser


def _open(page, url: str, shows: str, what: str) -> None:
    """Open ``url`` in the "Model training" view and wait until the page's text includes ``shows``."""
    page.goto(url + ("&" if "?" in url else "?") + "workflowType=machine_learning")
    page.wait(f"document.body.innerText.includes({json.dumps(shows)})", timeout=WAIT, what=what)


def _dialog_text(page) -> str:
    return page.eval("[...document.querySelectorAll('[role=dialog]')].map(d => d.innerText).join('\\n')") or ""


def test_the_run_page_states_the_verdict_the_intervals_and_the_gold_table(tracked, page):
    summary, selection = tracked["summary"], tracked["selection"]
    verdict = selection["verdict"]
    assert verdict in (CREDIBLE, NO_EDGE) and selection["champion"]["variant"] == SPEC.name
    dataset = f"gold-{RUN} ({summary['gold_sha256'][:36]})"  # MLflow keeps 36 characters of the digest
    _open(page, tracked["run_page"], dataset, "the run's input dataset")

    # the verdict as a tag of the run, beside the tags that lead to the data and the served model
    tags = page.eval(
        "Object.fromEntries([...document.querySelectorAll('[data-component-type=tag][role=status][title]')]"
        ".map(t => [t.title, t.textContent.slice(t.title.length + 1).trim()]))"
    )
    assert tags["verdict"] == verdict
    assert tags["gold_uri"] == tracked["gold_uri"] and tags["gold_sha256"] == summary["gold_sha256"]
    assert tags["native_uri"] == summary["native_uri"] and tags["variant"] == SPEC.name

    # the intervals and the baselines, as a person finds them: "auc" typed into the metrics' search box
    page.eval("document.querySelector('input[placeholder=\"Search metrics\"]').focus()")
    page.send("Input.insertText", text="auc")
    rows = page.wait(
        """(() => {
          const rows = [...document.querySelectorAll('[role=row]')]
            .filter(r => r.querySelector('a[href$="/model-metrics"]'))
            .map(r => [...r.querySelectorAll('[role=cell]')].map(c => c.textContent.trim()));
          return rows.length && rows.every(r => r[0].includes('auc')) ? rows : null;
        })()""",
        timeout=WAIT,
        what="the metrics filtered to AUC",
    )
    shown = {name: float(value) for name, value, *_ in rows}
    for key in INTERVALS:
        assert np.isfinite(summary["metrics"][key]), key  # the premise: this run has both intervals
        assert shown[key] == pytest.approx(summary["metrics"][key], rel=1e-12), key
    assert shown["val_auc_ci_low"] < shown["val_auc"] < shown["val_auc_ci_high"]
    assert shown["oot_auc_ci_low"] < shown["oot_auc"] < shown["oot_auc_ci_high"]

    # the registered version is linked from the run
    name, version = selection["champion"]["registered_model"], selection["champion"]["model_version"]
    assert page.eval(f"!!document.querySelector('a[href=\"#/models/{name}/versions/{version}\"]')")
    page.screenshot(screenshot_dir(tracked["tmp"]) / "mlflow-run.png")

    # the dataset, opened: the gold table's S3 source, its rows, its digest and its schema
    page.eval(
        "[...document.querySelectorAll('[role=button]')]"
        f".find(b => b.textContent.includes({json.dumps(dataset)})).click()"
    )
    page.wait(
        "[...document.querySelectorAll('[role=dialog]')].some(d => d.innerText.includes('S3 URI'))",
        timeout=WAIT,
        what="the dataset's details",
    )
    details = _dialog_text(page)
    assert f"S3 URI: {tracked['gold_uri']}" in details
    assert f"num rows: {tracked['gold_rows']}" in details
    assert f"Digest: {summary['gold_sha256'][:36]}" in details
    for column in ("timestamp", summary["features"][0], "y_up_h1"):
        assert column in details.split()


def test_each_figure_is_an_image_artifact_of_the_run(tracked, page):
    """ROC, calibration, feature importance and the OOT equity curve against buy & hold: each opens as an image
    in the run's artifacts, the same PNG the server hands out and the bucket holds."""
    from mlflow import MlflowClient
    from PIL import Image

    run_id = tracked["summary"]["mlflow_run_id"]
    client = MlflowClient(tracking_uri=tracked["url"])
    in_bucket = tracked["store"].list("mlflow/")
    _open(page, f"{tracked['run_page']}/artifacts", "report.html", "the run's artifact tree")
    page.wait(
        "(() => { const f = document.querySelector('[data-testid=artifact-tree-node][artifact-name=figures]');"
        " if (!f) return false; f.click(); return true; })()",
        timeout=WAIT,
        what="the figures folder",
    )
    previous = ""
    for name in FIGURES:  # a person clicks each file in the tree and looks at it
        path = f"figures/{name}.png"
        page.wait(
            f"(() => {{ const n = document.querySelector('[data-testid=artifact-tree-node][artifact-name=\"{name}.png\"]');"
            " if (!n) return false; n.click(); return true; })()",
            timeout=WAIT,
            what=f"{path} in the tree",
        )
        shown = page.wait(  # the preview keeps its <img> and swaps in a new blob: wait for the new one
            f"(() => {{ const i = document.querySelector('img[alt={json.dumps(path)}]');"
            f" return i && i.src !== {json.dumps(previous)} && i.complete && i.naturalWidth"
            " ? [i.src, i.naturalWidth, i.naturalHeight] : null; })()",
            timeout=WAIT,
            what=f"{path} to be drawn",
        )
        previous, size = shown[0], tuple(shown[1:])
        tree = set(
            page.eval(
                "[...document.querySelectorAll('[data-testid=artifact-tree-node]')].map(n => n.getAttribute('artifact-name'))"
            )
        )
        assert {f"{n}.png" for n in FIGURES} | {"report.html", "feature_importance.json", "feature_list.json"} <= tree
        with open(client.download_artifacts(run_id, path, str(tracked["tmp"])), "rb") as fh:
            logged = Image.open(io.BytesIO(fh.read()))
        assert size == logged.size, name  # the image shown is the figure the run logged
        assert any(k.endswith(f"/{run_id}/artifacts/{path}") for k in in_bucket), name  # proxied into the bucket
        if name == "equity":  # the README's picture: the page down to the figure's bottom edge
            shot = screenshot_dir(tracked["tmp"]) / "mlflow-figure.png"
            page.screenshot(shot)
            bottom = page.eval(f"document.querySelector('img[alt={json.dumps(path)}]').getBoundingClientRect().bottom")
            with Image.open(shot) as full:
                cropped = full.crop((0, 0, full.width, min(full.height, int(bottom) + 24)))
            cropped.save(shot, optimize=True)


def test_the_registered_version_states_its_verdict_and_leads_back_to_its_run(tracked, page):
    summary, champion = tracked["summary"], tracked["selection"]["champion"]
    name, version = champion["registered_model"], champion["model_version"]
    _open(page, f"{tracked['url']}/#/models/{name}/versions/{version}", "Source Run", "the model version page")

    text = page.eval("document.body.innerText")
    assert f"Verdict: {champion['verdict']}" in text
    low, high = champion["val_auc_ci_bonferroni"]
    assert f"[{low:.3f}, {high:.3f}] Bonferroni, k = 1" in text
    low, high = champion["oot_auc_ci"]
    assert f"[{low:.3f}, {high:.3f}] 95%" in text
    assert "majority class 0.500" in text and f"momentum {summary['metrics']['baseline_momentum_auc']:.4f}" in text
    items = page.eval(
        "Object.fromEntries([...document.querySelectorAll('[data-testid=descriptions-item]')].map(d => ["
        "d.querySelector('[data-testid=descriptions-item-label]').textContent.trim(),"
        "d.querySelector('[data-testid=descriptions-item-content]').innerHTML]))"
    )
    aliases = page.eval(
        "[...document.querySelectorAll('[data-testid=descriptions-item]')]"
        ".find(d => d.textContent.startsWith('Aliases')).innerText"
    )
    assert "champion" in aliases.replace("@", " ").split()
    run_link = f"#/experiments/{summary['experiment_id']}/runs/{summary['mlflow_run_id']}"
    assert f'href="{run_link}"' in items["Source Run"]
    for tag in ("verdict", "credible_edge", "val_auc_ci_bonferroni", "oot_auc_ci", "baseline_momentum_auc"):
        assert tag in text.split(), tag  # the version's tags (docs/ARCHITECTURE.md, "MLflow champion")

    # a person clicks the source run and lands on the run the version was trained in
    page.eval(f"document.querySelector('a[href=\"{run_link}\"]').click()")
    page.wait(
        f"location.hash.startsWith({json.dumps(run_link)}) && "
        f"document.body.innerText.includes({json.dumps(summary['mlflow_run_id'])})",
        timeout=WAIT,
        what="the source run's page",
    )
    assert f"{SPEC.name}-{RUN}" in page.eval("document.body.innerText").split()
