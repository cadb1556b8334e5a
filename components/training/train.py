"""Walk-forward validation, out-of-time test, baselines and MLflow logging for one variant."""

from __future__ import annotations

import base64
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from spx.components.gold.labels import label_columns, label_span
from spx.components.silver.volatility import periods_per_year
from spx.components.training import metrics as M
from spx.components.training.splits import validation_split, walk_forward
from spx.components.training.variants import VariantSpec, fit_estimator
from spx.core.errors import DataValidationError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    n_folds: int = 5
    oot_frac: float = 0.10
    val_frac: float = 0.15
    n_boot: int = 500
    cost_bps: float = 1.0
    seed: int = 42
    # Fits on more rows than this are thinned to every k-th row (k = ceil(n / max_fit_rows)), ending at the
    # block's last row; 0 fits on every row. Consecutive rows' labels overlap in h of their h+1 bars, so at
    # 1.4M one-minute rows and h = 30 a stride of 5 keeps six rows per label window: little information
    # lost, the fit several times cheaper. Evaluation (folds' test blocks, validation, OOT) uses every row.
    max_fit_rows: int = 300_000


def thin(rows: np.ndarray, max_rows: int) -> np.ndarray:
    """Every k-th of ``rows`` (k = ceil(len / max_rows)), ending at the last row; all of them when
    ``max_rows`` is 0 or not exceeded."""
    if max_rows <= 0 or len(rows) <= max_rows:
        return rows
    stride = -(-len(rows) // max_rows)
    return rows[::-1][::stride][::-1]


@dataclass
class VariantResult:
    spec: VariantSpec
    features: list[str]
    metrics: dict[str, float]
    folds: list[dict[str, float]]
    model: Any
    oot: pd.DataFrame  # timestamp, y_true, y_prob (or y_pred), ret
    importance: dict[str, float]
    n_train: int
    n_oot: int
    val_auc_boot: list | None = None  # bootstrap AUCs on the validation block (selection's Bonferroni interval)
    notes: dict | None = None  # why an interval is not given (too short a block, resamples off-centre)


def _score(model, spec: VariantSpec, X: np.ndarray) -> np.ndarray:
    if spec.task == "classification":
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


def _part(rows: np.ndarray) -> slice | np.ndarray:
    """A block of rows as a slice when it is contiguous (every block is): a view, not a copy."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def feature_matrix(gold: pd.DataFrame, feats: list[str], rows: np.ndarray) -> np.ndarray:
    """The float32 feature matrix of ``rows``, filled one column at a time (no float64 copy of the
    whole frame)."""
    X = np.empty((len(rows), len(feats)), dtype=np.float32)
    for j, col in enumerate(feats):
        X[:, j] = gold[col].to_numpy()[rows]
    return X


def feature_list(manifest: dict, spec: VariantSpec) -> list[str]:
    if spec.features == "all":
        cols = manifest["feature_columns"]
    elif spec.features == "market":  # everything but news: the no-news twin of an *_all variant
        news = set(manifest.get("news_feature_columns") or [])
        cols = [c for c in manifest["feature_columns"] if c not in news]
    else:
        cols = manifest["base_feature_columns"]
    if not cols:
        raise DataValidationError(f"variant {spec.name}: feature set {spec.features!r} is empty")
    return list(cols)


def train_variant(
    gold: pd.DataFrame,
    manifest: dict,
    spec: VariantSpec,
    cfg: TrainConfig,
    bar: pd.Timedelta,
    progress: Callable[[str], None] = log.info,
) -> VariantResult:
    up_col, ret_col = label_columns(spec.horizon)
    if up_col not in gold.columns:
        raise DataValidationError(f"gold has no label for horizon {spec.horizon} (columns {up_col})")
    rows = np.flatnonzero(gold[up_col].notna().to_numpy())
    feats = feature_list(manifest, spec)
    X = feature_matrix(gold, feats, rows)
    y = gold[up_col].to_numpy()[rows].astype(int)
    y_ret = gold[ret_col].to_numpy(float)[rows]
    last_ret = gold["ret_1"].to_numpy(float)[rows]
    timestamps = gold["timestamp"].iloc[rows].reset_index(drop=True)
    target = y if spec.task == "classification" else y_ret
    span = label_span(spec.horizon)
    blocks = validation_split(len(rows), cfg.oot_frac, cfg.val_frac, span)
    ppy = rows_per_year(timestamps, manifest, bar)

    def fit(train: np.ndarray):
        part = _part(thin(train, cfg.max_fit_rows))
        return fit_estimator(spec, X[part], target[part], cfg.seed)

    def score(model, block: np.ndarray) -> np.ndarray:
        return _score(model, spec, X[_part(block)])

    folds = []
    for k, fold in enumerate(walk_forward(len(blocks.sel_train), cfg.n_folds, span), start=1):
        t0 = time.perf_counter()
        model = fit(fold.train)
        s = score(model, fold.test)
        row = {"fold": k, "n_train": len(fold.train), "n_test": len(fold.test), "auc": M.auc_score(y[fold.test], s)}
        if spec.task == "classification":
            row.update({f: v for f, v in M.classification_metrics(y[fold.test], s).items() if f != "auc"})
        folds.append(row)
        progress(
            f"[{spec.name}] fold {k}/{cfg.n_folds}: AUC {row['auc']:.4f} "
            f"(train {len(fold.train)}, test {len(fold.test)}, {time.perf_counter() - t0:.1f}s)"
        )

    m: dict[str, Any] = {}
    # 1. validation block: what selection chooses on (a model fitted on the rows before it, purged)
    t0 = time.perf_counter()
    sel = fit(blocks.sel_train)
    s_sel_tr, s_val = score(sel, blocks.sel_train), score(sel, blocks.val)
    del sel
    t_fit, t0 = time.perf_counter() - t0, time.perf_counter()
    yv = y[blocks.val]
    m["val_auc"] = M.auc_score(yv, s_val)
    m["val_train_auc"] = M.auc_score(y[blocks.sel_train], s_sel_tr)
    m["val_overfit_gap_auc"] = m["val_train_auc"] - m["val_auc"]
    notes: dict[str, str] = {}
    m["val_auc_ci_low"], m["val_auc_ci_high"], boot, notes["val_auc_ci"] = M.auc_interval(
        yv, s_val, block=max(10, span), n_boot=cfg.n_boot, seed=cfg.seed
    )
    m.update({f"val_{k}": v for k, v in M.information_coefficients(s_val, y_ret[blocks.val]).items()})
    prob_val = s_val if spec.task == "classification" else (s_val > 0).astype(float)
    m.update(
        {
            f"val_{k}": v
            for k, v in M.backtest_long_flat(
                prob_val, y_ret[blocks.val], horizon=spec.horizon, periods_per_year=ppy, cost_bps=cfg.cost_bps
            ).items()
        }
    )
    progress(
        f"[{spec.name}] validation AUC {m['val_auc']:.4f} {_ci_text(m['val_auc_ci_low'], m['val_auc_ci_high'], notes)} "
        f"on {len(blocks.val)} rows (model fitted on {len(blocks.sel_train)}; "
        f"fit+score {t_fit:.1f}s, metrics+bootstrap {time.perf_counter() - t0:.1f}s)"
    )

    # 2. final model on everything before the out-of-time block (purged); the OOT block is reported
    t0 = time.perf_counter()
    model = fit(blocks.final_train)
    s_tr, s_oot = score(model, blocks.final_train), score(model, blocks.oot)
    t_fit, t0 = time.perf_counter() - t0, time.perf_counter()
    yt, yo = y[blocks.oot], y[blocks.final_train]
    if spec.task == "classification":
        m.update({f"oot_{k}": v for k, v in M.classification_metrics(yt, s_oot).items()})
        m.update({f"train_{k}": v for k, v in M.classification_metrics(yo, s_tr).items()})
    else:
        m.update({f"oot_{k}": v for k, v in M.regression_metrics(y_ret[blocks.oot], s_oot).items()})
        m.update({f"train_{k}": v for k, v in M.regression_metrics(y_ret[blocks.final_train], s_tr).items()})
    m["overfit_gap_auc"] = m["train_auc"] - m["oot_auc"]
    for key in ("auc", "accuracy", "log_loss", "brier"):
        vals = [f[key] for f in folds if key in f and not np.isnan(f[key])]
        if vals:
            m[f"cv_{key}_mean"], m[f"cv_{key}_std"] = float(np.mean(vals)), float(np.std(vals))
    lo, hi, _, notes["oot_auc_ci"] = M.auc_interval(yt, s_oot, block=max(10, span), n_boot=cfg.n_boot, seed=cfg.seed)
    m["oot_auc_ci_low"], m["oot_auc_ci_high"] = lo, hi
    m.update({f"oot_{k}": v for k, v in M.information_coefficients(s_oot, y_ret[blocks.oot]).items()})
    for name, v in M.majority_baseline(yo, yt).items():
        m[f"baseline_majority_{name}"] = v
    for name, v in M.momentum_baseline(yo, last_ret[blocks.final_train], yt, last_ret[blocks.oot]).items():
        m[f"baseline_momentum_{name}"] = v
    prob_like = s_oot if spec.task == "classification" else (s_oot > 0).astype(float)
    m.update(
        M.backtest_long_flat(
            prob_like, y_ret[blocks.oot], horizon=spec.horizon, periods_per_year=ppy, cost_bps=cfg.cost_bps
        )
    )
    m["n_train"], m["n_oot"], m["n_features"] = (
        float(len(blocks.final_train)),
        float(len(blocks.oot)),
        float(len(feats)),
    )
    m["n_val"], m["n_sel_train"] = float(len(blocks.val)), float(len(blocks.sel_train))
    intraday = bar < pd.Timedelta(days=1)
    for name, block in (("val", blocks.val), ("oot", blocks.oot)):
        days = session_days(timestamps.iloc[block], intraday)
        m[f"n_{name}_sessions"] = float(len(np.unique(days)))
        m[f"n_{name}_windows"] = float(independent_windows(days, span))
    m["purge_bars"] = float(span)
    m["n_fit_rows"] = float(len(thin(blocks.final_train, cfg.max_fit_rows)))
    m["rows_per_year"] = float(ppy)

    importance = dict(zip(feats, np.asarray(model.feature_importances_, dtype=float).tolist()))
    oot = pd.DataFrame(
        {
            "timestamp": timestamps.iloc[blocks.oot].to_numpy(),
            "y_true": yt,
            "y_prob" if spec.task == "classification" else "y_pred": s_oot,
            "ret": y_ret[blocks.oot],
        }
    )
    progress(
        f"[{spec.name}] OOT AUC {m['oot_auc']:.4f} {_ci_text(lo, hi, notes, 'oot_auc_ci')} vs majority "
        f"{m['baseline_majority_auc']:.3f} / momentum {m['baseline_momentum_auc']:.4f}; "
        f"train AUC {m['train_auc']:.4f} (final fit+score {t_fit:.1f}s, metrics+bootstrap "
        f"{time.perf_counter() - t0:.1f}s)"
    )
    return VariantResult(
        spec,
        feats,
        m,
        folds,
        model,
        oot,
        importance,
        len(blocks.final_train),
        len(blocks.oot),
        val_auc_boot=[round(float(a), 6) for a in boot],
        notes={k: v for k, v in notes.items() if v},
    )


def _ci_text(lo: float, hi: float, notes: dict[str, str], key: str = "val_auc_ci") -> str:
    return f"[{lo:.4f}, {hi:.4f}]" if np.isfinite(lo) else f"(no interval: {notes.get(key) or 'n/a'})"


def session_days(timestamps: pd.Series, intraday: bool) -> np.ndarray:
    """The session (New York date) of each row intraday; each row is its own session on daily bars."""
    if not intraday:
        return np.arange(len(timestamps))
    local = pd.DatetimeIndex(timestamps).tz_convert("America/New_York").tz_localize(None)
    return local.normalize().asi8


def independent_windows(days: np.ndarray, span: int) -> int:
    """Label windows that share no bar: per session ``ceil(rows / span)`` (labels of rows closer than ``span``
    overlap; labels of different sessions never do), on daily bars ``ceil(rows / span)``."""
    if not len(days):
        return 0
    _, counts = np.unique(days, return_counts=True)
    if len(counts) == len(days):  # one row per session (daily): consecutive labels overlap across sessions
        return int(-(-len(days) // span))
    return int(sum(-(-c // span) for c in counts.tolist()))


def rows_per_year(timestamps: pd.Series, manifest: dict, bar: pd.Timedelta) -> float:
    """Labelled rows a year, for annualising the backtest: intraday, 252 sessions x the labelled rows
    per session actually present (a session's last h+1 bars have no label); daily, the bars a year."""
    if bar < pd.Timedelta(days=1) and manifest.get("sessions"):
        days = pd.DatetimeIndex(timestamps).tz_convert("America/New_York").normalize().nunique()
        return 252.0 * len(timestamps) / max(1, days)
    return periods_per_year(bar, manifest.get("bars_per_year"))


# --------------------------------------------------------------------------------------------
# Persistence: native model files in S3, MLflow tracking
# --------------------------------------------------------------------------------------------

NATIVE_FILE = {"xgboost": "model.json", "lightgbm": "model.bst"}


def save_native(model, spec: VariantSpec, directory: Path) -> Path:
    """Write the model in the native format standard KServe runtimes load."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NATIVE_FILE[spec.model]
    if spec.model == "xgboost":
        model.get_booster().save_model(str(path))
    else:
        model.booster_.save_model(str(path))
    return path


def _pip_requirement(module: str) -> str:
    """``dist==version`` of the installed distribution providing ``module`` (``xgboost-cpu`` here, where PyPI's
    ``xgboost`` would pull the CUDA build): what the logged model needs, instead of MLflow's inference, which
    exports the whole project's lock (134 packages) and checks each against the environment (~2 s a model)."""
    from importlib import metadata

    for dist in (f"{module}-cpu", module):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return module


def input_example(gold: pd.DataFrame, features: list[str], label: str, n: int = 5) -> pd.DataFrame:
    """The last ``n`` labelled rows of ``gold``'s features, as float64: real values for MLflow's input example
    and signature (what a caller sends), not zeros."""
    rows = gold.loc[gold[label].notna(), features].tail(n)
    return rows.astype(np.float64).reset_index(drop=True)


def gold_dataset(gold: pd.DataFrame, gold_uri: str, sha256: str, run_id: str):
    """The gold table as an MLflow dataset: its S3 source, its SHA-256 (the digest; MLflow keeps 36
    characters of it, the run's ``gold_sha256`` tag all 64) and its schema (type and "has no missing value"
    per column). A ``MetaDataset``: the table stays in the bucket, and nothing is inferred value by value
    (``mlflow.data.from_pandas`` checks every cell for NaN in Python: 4.5 s on the 16.5k-row default table)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, DataType, Schema

    def kind(dtype) -> DataType:
        if pd.api.types.is_bool_dtype(dtype):
            return DataType.boolean
        if pd.api.types.is_integer_dtype(dtype):
            return DataType.long
        if pd.api.types.is_float_dtype(dtype):
            return DataType.double
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return DataType.datetime
        return DataType.string

    has_missing = gold.isna().any()
    schema = Schema(
        [ColSpec(kind(dtype), str(col), required=not bool(has_missing[col])) for col, dtype in gold.dtypes.items()]
    )
    rows, columns = gold.shape

    class GoldTable(MetaDataset):
        """A MetaDataset with a profile: the table's rows and cells."""

        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": int(rows), "num_elements": int(rows * columns)}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    return GoldTable(resolve_dataset_source(gold_uri), name=f"gold-{run_id}", digest=sha256[:36] or None, schema=schema)


def log_to_mlflow(
    result: VariantResult,
    *,
    run_id: str,
    gold_uri: str,
    native_uri: str,
    tracking_uri: str,
    experiment: str,
    artifact_root: str | None,
    gold: pd.DataFrame | None = None,
    gold_sha256: str = "",
    figures: dict[str, bytes] | None = None,
    report_html: str = "",
) -> dict[str, str]:
    """One MLflow run for the variant: tags, params, every metric (the folds as steps), the feature list and
    importance, the figures (``figures/*.png``) and the HTML report, the gold table as the run's input
    dataset (``mlflow.data``: its S3 source and digest, so a registered version leads back to its data), and
    the native Booster with signature and input example."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_root)
    mlflow.set_experiment(experiment)
    spec = result.spec
    with mlflow.start_run(run_name=f"{spec.name}-{run_id}") as run:
        mlflow.set_tags(
            {
                "variant": spec.name,
                "pipeline_run_id": run_id,
                "model_format": spec.model,
                "task": spec.task,
                "horizon": str(spec.horizon),
                "gold_uri": gold_uri,
                "native_uri": native_uri,
                **({"gold_sha256": gold_sha256} if gold_sha256 else {}),
            }
        )
        mlflow.log_params(
            {
                "model": spec.model,
                "task": spec.task,
                "features": spec.features,
                "horizon": spec.horizon,
                "n_features": len(result.features),
                **{
                    f"hp_{k}": v
                    for k, v in result.model.get_params().items()
                    if isinstance(v, (int, float, str)) and v is not None
                },
            }
        )
        mlflow.log_metrics({k: float(v) for k, v in result.metrics.items() if np.isfinite(v)})
        for fold in result.folds:
            mlflow.log_metrics(
                {f"fold_{k}": float(v) for k, v in fold.items() if k != "fold" and np.isfinite(v)},
                step=int(fold["fold"]),
            )
        mlflow.log_dict({"features": result.features}, "feature_list.json")
        mlflow.log_dict(result.importance, "feature_importance.json")
        label = label_columns(spec.horizon)[0 if spec.task == "classification" else 1]
        if gold is not None:
            dataset = gold_dataset(gold, gold_uri, gold_sha256, run_id)
            try:
                mlflow.log_input(dataset, context="training")
            except mlflow.exceptions.MlflowException as exc:
                # two variants registering the same gold table at once: MLflow's SQL store checks, then inserts, so
                # one of them hits the datasets table's unique key (SQLite locally: "UNIQUE constraint failed:
                # datasets…"; PostgreSQL behind the chart's server, where the variants are concurrent pods:
                # "duplicate key value violates unique constraint \"dataset_pk\""; both messages carry the INSERT INTO
                # datasets statement). The second call finds the row the first one wrote.
                message = str(exc).lower()
                if "unique constraint" not in message or "datasets" not in message:
                    raise
                mlflow.log_input(dataset, context="training")
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in (figures or {}).items():
                (Path(tmp) / f"{name}.png").write_bytes(png)
            if figures:
                mlflow.log_artifacts(tmp, "figures")
        if report_html:
            mlflow.log_text(report_html, "report.html")
        if gold is not None and label in gold.columns:
            X_ex = input_example(gold, result.features, label)
        else:  # no table at hand (tests): a zero row of the right width
            X_ex = pd.DataFrame(np.zeros((2, len(result.features)), dtype=np.float64), columns=result.features)
        out_ex = _score(result.model, spec, X_ex.to_numpy())
        signature = infer_signature(X_ex, out_ex)
        # log the Booster (not the sklearn wrapper): native JSON / text files, and pyfunc.predict returns
        # P(up) (or the predicted % return), exactly what the served native file answers
        requirements = [_pip_requirement(spec.model)]
        if spec.model == "xgboost":
            info = mlflow.xgboost.log_model(
                result.model.get_booster(),
                name="model",
                model_format="json",
                signature=signature,
                input_example=X_ex,
                pip_requirements=requirements,
            )
        else:
            info = mlflow.lightgbm.log_model(
                result.model.booster_,
                name="model",
                signature=signature,
                input_example=X_ex,
                pip_requirements=requirements,
            )
        return {"mlflow_run_id": run.info.run_id, "model_uri": info.model_uri, "experiment_id": run.info.experiment_id}


def report_inputs(result: VariantResult) -> dict[str, Any]:
    """The OOT arrays the report's pictures are drawn from: P(up), or a regressor's score mapped to (0, 1)
    by a logistic (monotone: the ROC is unchanged)."""
    oot = result.oot
    score_col = "y_prob" if "y_prob" in oot.columns else "y_pred"
    score = oot[score_col].to_numpy(float)
    prob = score if score_col == "y_prob" else 1.0 / (1.0 + np.exp(-score))
    return {
        "y_true": oot["y_true"].to_numpy(int),
        "y_prob": prob,
        "returns": oot["ret"].to_numpy(float),
        "timestamps": oot["timestamp"],
    }


def run_training(
    store,
    *,
    gold_uri: str,
    manifest_uri: str,
    spec: VariantSpec,
    run_id: str,
    cfg: TrainConfig,
    settings,
    progress: Callable[[str], None] = log.info,
) -> dict:
    """Stage entry point: train + evaluate one variant, persist everything, return a summary.

    The pictures are drawn once (``visuals.training_figures``) and used three times: MLflow's ``figures/``, the
    HTML report (in the bucket and in MLflow) and the KFP HTML output. The returned dict carries the report
    and the ROC/confusion data under ``_report`` (not written to ``metrics.json``)."""
    from spx.components.training import visuals

    gold = store.read_parquet(gold_uri)
    manifest = store.get_json(manifest_uri)
    bar = pd.Timedelta(manifest["bar_interval"])
    result = train_variant(gold, manifest, spec, cfg, bar, progress)
    t0 = time.perf_counter()
    prefix = f"models/{run_id}/{spec.name}/"
    with tempfile.TemporaryDirectory() as tmp:
        path = save_native(result.model, spec, Path(tmp))
        store.upload_file(str(path), prefix + path.name)
        native_bytes = path.read_bytes()
    native_uri = store.uri(prefix)
    store.put_parquet(prefix + "oot_predictions.parquet", result.oot)
    store.put_json(prefix + "importance.json", result.importance)
    pictures = report_inputs(result)
    drawn = dict(
        importance=result.importance, cost_bps=cfg.cost_bps, horizon=spec.horizon, timestamps=pictures["timestamps"]
    )
    figures = visuals.training_figures(pictures["y_true"], pictures["y_prob"], pictures["returns"], **drawn)
    report_html = visuals.training_report_html(
        pictures["y_true"],
        pictures["y_prob"],
        pictures["returns"],
        title=spec.name,
        figures=figures,
        metrics=result.metrics,
        **drawn,
    )
    store.put_text(prefix + "report.html", report_html, content_type="text/html")
    t_pictures, t0 = time.perf_counter() - t0, time.perf_counter()
    artifact_root = None
    if not settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        artifact_root = f"s3://{store.bucket}/mlflow"
    gold_sha = (store.head(gold_uri).get("Metadata") or {}).get("sha256", "")
    tracking = log_to_mlflow(
        result,
        run_id=run_id,
        gold_uri=gold_uri,
        native_uri=native_uri,
        tracking_uri=settings.mlflow_tracking_uri,
        experiment=settings.mlflow_experiment,
        artifact_root=artifact_root,
        gold=gold,
        gold_sha256=gold_sha,
        figures={k: base64.b64decode(v) for k, v in figures.items()},
        report_html=report_html,
    )
    summary = {
        "variant": spec.name,
        "spec": asdict(spec),
        "run_id": run_id,
        "native_uri": native_uri,
        "model_format": spec.model,
        "task": spec.task,
        "horizon": spec.horizon,
        "features": result.features,
        "metrics": result.metrics,
        "folds": result.folds,
        "n_train": result.n_train,
        "n_oot": result.n_oot,
        "cost_bps": cfg.cost_bps,
        "max_fit_rows": cfg.max_fit_rows,
        "val_auc_boot": result.val_auc_boot or [],
        "gold_uri": gold_uri,
        "gold_sha256": gold_sha,
        "notes": result.notes or {},
        **tracking,
    }
    uri = store.put_json(prefix + "metrics.json", summary).uri
    progress(
        f"[{spec.name}] saved {native_uri} and MLflow run {tracking['mlflow_run_id']} (pictures "
        f"{t_pictures:.1f}s, MLflow {time.perf_counter() - t0:.1f}s)"
    )
    report = {
        "html": report_html,
        "roc": visuals.roc_and_confusion(pictures["y_true"], pictures["y_prob"])
        if len(np.unique(pictures["y_true"])) == 2
        else None,
        "native_file": NATIVE_FILE[spec.model],
        "native_bytes": native_bytes,
    }
    return {**summary, "metrics_uri": uri, "_report": report}
