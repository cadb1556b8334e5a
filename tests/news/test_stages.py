"""Bronze -> silver -> gold -> as-of join end to end: plain functions, the KFP components under
KFP's local SubprocessRunner, and the `spx news` CLI — real S3 on loopback, tiny FinBERT-shaped
model (plumbing only), and the 'no news at all' path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from spx.components.news.bronze import ingest
from spx.components.news.gold import SIGNAL_COLUMNS, build_gold
from spx.components.news.join import NEWS_FEATURE_COLUMNS, join_news_features
from spx.components.news.silver import build_silver

ROOT = Path(__file__).resolve().parents[2]


def news_file(tmp_path: Path) -> Path:
    path = tmp_path / "news.csv"
    pd.DataFrame(
        {
            "title": [
                "Stocks rally as Fed signals rate cuts",
                "Oil prices fall on demand worries",
                "Powell warns inflation fight is not over",
                "Banks beat earnings expectations",
                "Bad bytes \ufffd here",
                "",
            ],
            "body": ["", "", "", "Profits rose.", "", ""],
            "published_at": [
                "2024-03-19T14:10:00Z",
                "2024-03-19T14:40:00Z",
                "2024-03-19T15:00:00Z",
                "2024-03-20T13:30:00Z",
                "2024-03-19T14:00:00Z",
                "2024-03-19T14:00:00Z",
            ],
            "url": [f"https://news.example.com/{i}" for i in range(6)],
        }
    ).to_csv(path, index=False)
    return path


def bars() -> pd.DataFrame:
    return pd.DataFrame(
        {"timestamp": pd.date_range("2024-03-19 14:00", "2024-03-20 15:00", freq="30min", tz="UTC"), "close": 1.0}
    )


def test_plain_stages_end_to_end(store, tiny_model, tmp_path):
    result = ingest("file", "2024-03-18", "2024-03-21", store=store, path=news_file(tmp_path))
    assert result.articles == 4 and dict(result.report.skipped) == {"bad_encoding": 1, "empty_text": 1}
    silver_uri, _ = build_silver(store, result.prefix, "r1")
    gold_uri, summary = build_gold(store, silver_uri, "r1", window_minutes=60, model_location=str(tiny_model))
    assert summary["articles"] == 4 and summary["scored"] == 4
    signals = store.read_parquet(gold_uri)
    assert list(signals.columns) == list(SIGNAL_COLUMNS)
    np.testing.assert_allclose(signals[["positive_prob", "negative_prob", "neutral_prob"]].sum(axis=1), 1, atol=1e-5)
    assert (signals["window_minutes"] == 60).all()

    joined = join_news_features(bars(), signals)
    counts = dict(zip(joined["timestamp"].dt.strftime("%m-%d %H:%M"), joined["news_article_count"]))
    assert counts["03-19 14:00"] == 0  # nothing before the first article
    assert counts["03-19 14:30"] == 1  # 14:10
    assert counts["03-19 15:00"] == 2  # 14:10, 14:40 (15:00 itself is not before 15:00)
    assert counts["03-19 15:30"] == 2  # 14:40, 15:00
    assert counts["03-20 14:00"] == 1  # 13:30 next day
    assert set(NEWS_FEATURE_COLUMNS) <= set(joined.columns)

    # a rerun scores nothing new
    _, summary2 = build_gold(store, silver_uri, "r2", window_minutes=60, model_location=str(tiny_model))
    assert summary2["scored"] == 0 and summary2["cached"] == 4


def test_no_news_anywhere_returns_empty_uris(store, monkeypatch):
    monkeypatch.setenv("SPX_NEWS_FILE", "/nonexistent/news.parquet")
    assert ingest("file", "2024-01-01", "2024-01-02", store=store).prefix == ""
    assert build_silver(store, "", "r")[0] == ""
    assert build_gold(store, "", "r", model_location="")[0] == ""
    joined = join_news_features(bars(), None)
    assert (joined["news_article_count"] == 0).all()


def test_kfp_components_run_locally(store, tiny_model, tmp_path, monkeypatch):
    from kfp import local

    from spx.components.news.component import news_bronze, news_gold, news_silver

    monkeypatch.chdir(ROOT)
    # the chain passes typed Datasets, which KFP's local runner moves between the tasks of a pipeline only
    # (no annotations on it: this module's `from __future__ import annotations` would hand KFP strings)
    from kfp import dsl

    def chain(root, path, run_id, model):
        @dsl.pipeline
        def news_chain():
            bronze = news_bronze(source="file", start="2024-03-18", end="2024-03-21", path=path)
            silver = news_silver(bronze=bronze.outputs["news"], run_id=run_id)
            news_gold(silver=silver.outputs["tone"], run_id=run_id, window_minutes=30, model_location=model)

        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
        news_chain()
        return {
            p.parent.name: json.loads(p.read_text())
            for p in root.glob("*/news-*/*")
            if p.name in ("news", "tone", "signals")
        }

    made = chain(tmp_path / "kfp-1", str(news_file(tmp_path)), "kfp-1", str(tiny_model))
    assert made["news-bronze"]["uri"] == store.uri("bronze/news/file/")  # each Dataset names its table
    assert made["news-silver"]["uri"] == store.uri("silver/kfp-1/news.parquet")
    signals = store.read_parquet(made["news-gold"]["uri"])
    assert len(signals) == 4 and (signals["window_minutes"] == 30).all()

    # no news at all: each component's Dataset names no table ("") and the chain still completes
    monkeypatch.setenv("SPX_NEWS_FILE", str(tmp_path / "absent.csv"))
    empty = chain(tmp_path / "kfp-2", "", "kfp-2", "")
    assert [empty[t]["uri"] for t in ("news-bronze", "news-silver", "news-gold")] == ["", "", ""]


def test_cli_ingest_silver_score(store, tiny_model, tmp_path, monkeypatch):
    from spx.cli.news import news_app

    runner = CliRunner()
    res = runner.invoke(
        news_app,
        [
            "ingest",
            "--source",
            "file",
            "--start",
            "2024-03-18",
            "--end",
            "2024-03-21",
            "--path",
            str(news_file(tmp_path)),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    ingest_out = json.loads(res.stdout)
    assert ingest_out["written"] == 4 and ingest_out["skipped"] == {"bad_encoding": 1, "empty_text": 1}
    res = runner.invoke(
        news_app,
        ["score", "--bronze-prefix", ingest_out["prefix"], "--run-id", "cli", "--model", str(tiny_model), "--quiet"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["signals_uri"] == store.uri("gold/cli/news_signals.parquet")
    monkeypatch.delenv("SPX_FINBERT_MODEL", raising=False)
    monkeypatch.delenv("SPX_ALLOW_HUB_DOWNLOAD", raising=False)
    res = runner.invoke(
        news_app,
        [
            "score",
            "--silver-uri",
            store.uri("silver/cli/news.parquet"),
            "--run-id",
            "cli2",
            "--model",
            "ProsusAI/finbert",
            "--quiet",
        ],
    )
    assert res.exit_code == 2 and "not allowed" in res.output
    res = runner.invoke(news_app, ["ingest", "--source", "bogus", "--start", "2024-01-01", "--end", "2024-01-02"])
    assert res.exit_code == 2 and "'bogus' is not one of" in res.output
    assert all(f"'{value}'" in res.output for value in ("file", "gdelt", "rss", "none"))
