"""FinBERT scoring: model location, batched inference, and a content-hash score cache.

The model is any BERT-style sequence classifier with three labels named positive / negative /
neutral in ``config.id2label`` (``ProsusAI/finbert`` orders them positive, negative, neutral; the
order is always read from the config). Where it comes from is configuration
(``SPX_FINBERT_MODEL`` or the ``model_location`` argument):

* a local directory holding ``config.json``, weights and tokenizer files;
* an ``s3://`` prefix in the bucket: downloaded once into ``$SPX_HOME/models/<hash>/`` and
  reused while the bucket listing (keys, sizes, ETags) is unchanged;
* a hub id (``ProsusAI/finbert``) — only when ``SPX_ALLOW_HUB_DOWNLOAD=1`` and
  ``HF_HUB_OFFLINE`` is not set; otherwise a clear error. Nothing downloads silently.

Scores are cached in the bucket under ``cache/news/finbert/{model_key}/`` as parquet shards of
``text_hash -> probabilities``, where ``model_key`` hashes the model files and ``max_length``.
A rerun looks up the cache first and loads the model only when some text is new.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from spx.core.choices import PRECISIONS
from spx.core.errors import SpxError
from spx.core.settings import settings

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("positive", "negative", "neutral")
PROB_COLUMNS: tuple[str, ...] = tuple(f"{label}_prob" for label in LABELS)
DEFAULT_MODEL_ENV = "SPX_FINBERT_MODEL"
HUB_ALLOW_ENV = "SPX_ALLOW_HUB_DOWNLOAD"
CACHE_ROOT = "cache/news/finbert"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")


class ModelUnavailable(SpxError, RuntimeError):
    """The configured sentiment model cannot be found or may not be downloaded."""


def _home() -> Path:
    return settings().home


# -- model location ---------------------------------------------------------------------------


def _s3_listing(store, uri: str) -> list[dict[str, Any]]:
    from spx.core.storage import parse_uri

    bucket, prefix = parse_uri(uri.rstrip("/") + "/")
    paginator = store.client.get_paginator("list_objects_v2")
    out = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            if rel and not rel.endswith("/"):
                out.append(
                    {"uri": f"s3://{bucket}/{obj['Key']}", "rel": rel, "size": obj["Size"], "etag": obj.get("ETag", "")}
                )
    return sorted(out, key=lambda o: o["rel"])


def _listing_hash(listing: list[dict[str, Any]]) -> str:
    text = json.dumps([(o["rel"], o["size"], o["etag"]) for o in listing])
    return hashlib.sha256(text.encode()).hexdigest()


def download_s3_model(store, uri: str, cache_dir: Path | None = None) -> Path:
    """Mirror an s3:// model prefix to a local directory (skipped when already current)."""
    listing = _s3_listing(store, uri)
    if not any(o["rel"] == "config.json" for o in listing):
        raise ModelUnavailable(
            f"no model at {uri}: expected config.json, weights and tokenizer files "
            f"under that prefix (found {[o['rel'] for o in listing][:10]})"
        )
    cache_dir = Path(cache_dir or _home() / "models")
    target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
    marker = target / ".spx-listing"
    digest = _listing_hash(listing)
    if marker.exists() and marker.read_text() == digest:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for obj in listing:
        dest = target / obj["rel"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        store.download_file(obj["uri"], tmp)
        tmp.replace(dest)
    marker.write_text(digest)
    log.info("model %s downloaded to %s (%d files)", uri, target, len(listing))
    return target


def configured_model(location: str | None = None) -> str:
    """The FinBERT location in force ("" when none: the lexicon scorer is used instead)."""
    return (location or settings().news.finbert_model).strip()


def resolve_model(location: str | None = None, *, store=None, cache_dir: Path | None = None) -> Path:
    """A local directory holding the model named by ``location`` (see module docstring)."""
    location = (location or settings().news.finbert_model).strip()
    if not location:
        raise ModelUnavailable(
            f"no sentiment model configured: set {DEFAULT_MODEL_ENV} (or pass "
            "model_location) to a local directory, an s3:// prefix or a hub id"
        )
    if location.startswith("s3://"):
        if store is None:
            from spx.core.storage import ObjectStore

            store = ObjectStore()
        return download_s3_model(store, location, cache_dir)
    path = Path(location).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelUnavailable(f"model directory {path} has no config.json")
        return path.resolve()
    if location.startswith((".", "/", "~")) or location.count("/") != 1:
        raise ModelUnavailable(f"model directory {location} does not exist")
    # a hub id such as ProsusAI/finbert
    news = settings().news
    if not news.allow_hub_download or news.hf_hub_offline:
        raise ModelUnavailable(
            f"{location!r} is not a local directory or s3:// prefix, and downloading it from the model "
            f"hub is not allowed here ({HUB_ALLOW_ENV}=1 allows it; HF_HUB_OFFLINE=1 forbids it). "
            "Put the model files in the bucket and point the model location at that s3:// prefix."
        )
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(location, cache_dir=str(cache_dir or _home() / "hf")))


def _file_sha(path: Path, memo: dict[str, Any]) -> str:
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    memo[key] = h.hexdigest()
    return memo[key]


def model_fingerprint(model_dir: Path, memo_path: Path | None = None) -> str:
    """SHA-256 over the model's files (names and content). Large weight hashes are memoised by
    (path, size, mtime) in ``$SPX_HOME/cache/model-fingerprints.json``."""
    memo_path = memo_path or _home() / "cache" / "model-fingerprints.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    h = hashlib.sha256()
    for path in sorted(Path(model_dir).rglob("*")):
        if not path.is_file() or path.name.startswith(".spx") or path.name.endswith(".part"):
            continue
        rel = path.relative_to(model_dir).as_posix()
        if rel.startswith(".cache/"):
            continue
        h.update(rel.encode() + b"\0" + _file_sha(path, memo).encode() + b"\n")
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        memo_path.write_text(json.dumps(memo))
    except OSError:
        pass
    return h.hexdigest()


# -- inference --------------------------------------------------------------------------------


def label_indices(id2label: dict[Any, str]) -> list[int]:
    """Model output index of positive, negative, neutral (in that order), from config.id2label."""
    by_name = {str(name).strip().lower(): int(idx) for idx, name in id2label.items()}
    missing = [label for label in LABELS if label not in by_name]
    if missing or len(by_name) != 3:
        raise ModelUnavailable(
            f"model labels {dict(id2label)} are not FinBERT's three classes {LABELS}; missing {missing}"
        )
    return [by_name[label] for label in LABELS]


class FinBertScorer:
    """Batched, length-sorted, ``torch.inference_mode`` scoring with truncation.

    ``precision``: ``fp32`` (default, the model as trained), ``bf16`` (CPU autocast; needs
    AVX512-BF16/AMX to pay off) or ``int8`` (dynamic int8 quantisation of the Linear layers —
    about 2-3x faster on CPU, probabilities differ slightly). Each precision has its own cache."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        batch_size: int = 32,
        max_length: int = 128,
        num_threads: int | None = None,
        precision: str = "fp32",
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if batch_size < 1 or max_length < 8:
            raise ValueError("batch_size must be >= 1 and max_length >= 8")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        threads = num_threads or settings().news.torch_threads
        if threads > 0:
            torch.set_num_threads(threads)
        self.torch = torch
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir, local_files_only=True)
        self.model.eval()
        if precision == "int8":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
                self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.order = label_indices(self.model.config.id2label)
        limit = getattr(self.model.config, "max_position_embeddings", max_length) or max_length
        self.max_length = min(max_length, int(limit))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) probabilities: columns positive, negative, neutral."""
        torch = self.torch
        n = len(texts)
        out = np.zeros((n, 3), dtype=np.float32)
        if n == 0:
            return out
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        ids = enc["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")  # similar lengths share a batch
        keys = [k for k in enc.keys()]
        import contextlib

        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="pt")
                logits = self.model(**batch).logits.float()
                probs = torch.softmax(logits, dim=-1)[:, self.order]
                out[idx] = probs.cpu().numpy()
        return out


# -- cache ------------------------------------------------------------------------------------


class ScoreCache:
    """``text_hash -> probabilities`` parquet shards under ``cache/news/finbert/{model_key}/``."""

    MAX_SHARDS = 64

    def __init__(self, store, model_key: str):
        self.store = store
        self.prefix = f"{CACHE_ROOT}/{model_key}/"

    def load(self) -> pd.DataFrame:
        keys = [k for k in self.store.list(self.prefix) if k.endswith(".parquet")]
        if not keys:
            return pd.DataFrame(
                {"text_hash": pd.Series(dtype=object), **{c: pd.Series(dtype=np.float32) for c in PROB_COLUMNS}}
            )
        frame = pd.concat([self.store.read_parquet(k) for k in keys], ignore_index=True)
        frame = frame.drop_duplicates("text_hash", keep="first").reset_index(drop=True)
        if len(keys) > self.MAX_SHARDS:
            self._compact(frame, keys)
        return frame

    def _compact(self, frame: pd.DataFrame, keys: list[str]) -> None:
        merged = self.save(frame)
        for key in keys:
            if merged and not merged.endswith(key):
                self.store.delete(key)
        log.info("score cache %s compacted %d shards into one", self.prefix, len(keys))

    def save(self, frame: pd.DataFrame) -> str:
        if frame.empty:
            return ""
        buf = io.BytesIO()
        frame[["text_hash", *PROB_COLUMNS]].sort_values("text_hash").to_parquet(buf, index=False)
        data = buf.getvalue()
        key = f"{self.prefix}{hashlib.sha256(data).hexdigest()[:32]}.parquet"
        return self.store.put_bytes(key, data, write_once=True, content_type="application/vnd.apache.parquet").uri


@dataclass
class ScoreStats:
    articles: int = 0
    cached: int = 0
    scored: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_key(model_dir: Path, max_length: int, precision: str = "fp32") -> str:
    suffix = "" if precision == "fp32" else f":{precision}"
    return hashlib.sha256(f"{model_fingerprint(model_dir)}:{max_length}{suffix}".encode()).hexdigest()[:24]


def score_texts(
    texts: pd.DataFrame,
    *,
    model_location: str | None = None,
    store=None,
    batch_size: int = 32,
    max_length: int = 128,
    use_cache: bool = True,
    scorer: FinBertScorer | None = None,
    precision: str = "fp32",
) -> tuple[pd.DataFrame, ScoreStats]:
    """Probabilities for the unique ``text_hash`` rows of ``texts`` (columns text_hash, text).

    Cached scores are reused; only new texts reach the model, which is loaded only then.
    Returns (frame with text_hash + PROB_COLUMNS, stats)."""
    t0 = time.perf_counter()
    unique = texts.drop_duplicates("text_hash")[["text_hash", "text"]].reset_index(drop=True)
    stats = ScoreStats(articles=len(unique))
    model_dir = scorer.model_dir if scorer is not None else resolve_model(model_location, store=store)
    cache = None
    known = pd.DataFrame(columns=["text_hash", *PROB_COLUMNS])
    if use_cache and store is not None:
        cache = ScoreCache(
            store,
            model_key(
                model_dir, scorer.max_length if scorer else max_length, scorer.precision if scorer else precision
            ),
        )
        known = cache.load()
        known = known[known["text_hash"].isin(unique["text_hash"])]
    todo = unique[~unique["text_hash"].isin(known["text_hash"])]
    stats.cached = len(unique) - len(todo)
    fresh = pd.DataFrame(columns=["text_hash", *PROB_COLUMNS])
    if len(todo):
        t1 = time.perf_counter()
        scorer = scorer or FinBertScorer(model_dir, batch_size=batch_size, max_length=max_length, precision=precision)
        probs = scorer.predict(todo["text"].tolist())
        fresh = pd.DataFrame(
            {"text_hash": todo["text_hash"].to_numpy(), **{c: probs[:, i] for i, c in enumerate(PROB_COLUMNS)}}
        )
        stats.scored = len(fresh)
        stats.model_seconds = time.perf_counter() - t1
        if cache is not None:
            cache.save(fresh)
    parts = [part for part in (known, fresh) if len(part)]
    result = pd.concat(parts, ignore_index=True) if parts else fresh
    for c in PROB_COLUMNS:
        result[c] = result[c].astype(np.float64)
    stats.seconds = time.perf_counter() - t0
    log.info(
        "FinBERT: %d unique texts, %d from cache, %d scored in %.2fs",
        stats.articles,
        stats.cached,
        stats.scored,
        stats.seconds,
    )
    return result.reset_index(drop=True), stats
