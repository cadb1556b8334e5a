"""The offline news scorer: FinVADER's financial lexicons on top of VADER (``vaderSentiment``).

FinVADER (PyPI ``finvader``, Apache-2.0) is VADER with two financial word lists merged into its
lexicon: SentiBigNomics (scaled by 0.1, as FinVADER does) and Henry (2008). The ``finvader`` *module*
calls ``nltk.download`` when imported, so it is never imported here: its two word-list files are
read as data (parsed with :mod:`ast`, nothing executed) from the installed distribution. Where the
package is not installed (the ``news`` extra installs it; it pins ``nltk==3.6.2``, which clashes with
TextBlob's ``nltk>=3.9``, so uv.lock overrides that pin), the same lists are read from
``../shared/data/sentiment/finvader_lexicons.csv`` when present; otherwise the scorer is plain VADER
and says so (``LexiconScorer.lexicon_source``).

Scores: VADER's ``compound`` in [-1, 1] is the article's sentiment. As probabilities (the columns the
FinBERT path fills): ``positive = max(compound, 0)``, ``negative = max(-compound, 0)``,
``neutral = 1 - |compound|`` — so ``positive - negative == compound``. The label rule (for evaluation)
is VADER's: compound > 0.05 positive, < -0.05 negative, else neutral.
"""

from __future__ import annotations

import ast
import logging
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

SENTIBIGNOMICS_SCALE = 0.1  # finvader.finvader: "constant = 0.1" applied to SentiBigNomics
THRESHOLD = 0.05
NAME = "finvader-lexicon"


def _dict_assignments(source: str) -> dict[str, float]:
    """``name['term'] = value`` statements of a Python file, read without executing it."""
    out: dict[str, float] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            key = node.targets[0].slice
            try:
                term = ast.literal_eval(key)
                value = ast.literal_eval(node.value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(term, str) and isinstance(value, (int, float)):
                out[term] = float(value)
    return out


def _finvader_files() -> tuple[Path, Path] | None:
    """SentiBignomics.py and Henry.py of the installed ``finvader`` distribution (not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("finvader")
    except metadata.PackageNotFoundError:
        return None
    senti = Path(str(dist.locate_file("finvader/SentiBignomics.py")))
    henry = Path(str(dist.locate_file("finvader/Henry.py")))
    return (senti, henry) if senti.exists() and henry.exists() else None


def _shared_csv() -> Path | None:
    from spx.components.bronze.datasets import shared_data_dir

    shared = shared_data_dir()
    path = shared / "sentiment" / "finvader_lexicons.csv" if shared else None
    return path if path is not None and path.exists() else None


@lru_cache(maxsize=1)
def finvader_lexicon() -> tuple[dict[str, float], str]:
    """(term -> valence to merge into VADER, where it came from). Empty dict when unavailable."""
    files = _finvader_files()
    if files is not None:
        senti = _dict_assignments(files[0].read_text(encoding="utf-8", errors="replace"))
        henry = _dict_assignments(files[1].read_text(encoding="utf-8", errors="replace"))
        merged = {k: v * SENTIBIGNOMICS_SCALE for k, v in senti.items()}
        merged.update(henry)  # finvader's Merge(sentibignomics, henry): Henry wins on a clash
        return merged, f"finvader package files ({files[0].parent})"
    csv = _shared_csv()
    if csv is not None:
        import pandas as pd

        frame = pd.read_csv(csv)
        merged = {}
        for source in ("sentibignomics", "henry"):  # same order and scaling as the package
            part = frame[frame["source"].str.lower().str.startswith(source)]
            scale = SENTIBIGNOMICS_SCALE if source == "sentibignomics" else 1.0
            merged.update({str(t): float(v) * scale for t, v in zip(part["term"], part["score"])})
        return merged, f"{csv}"
    return {}, "none (plain VADER)"


class LexiconScorer:
    """VADER with the FinVADER lexicons (``financial=True``) or plain VADER (``financial=False``)."""

    def __init__(self, financial: bool = True):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()
        self.lexicon_source = "plain VADER"
        self.name = "vader"
        if financial:
            extra, source = finvader_lexicon()
            if extra:
                self.analyzer.lexicon.update(extra)
                self.lexicon_source = source
                self.name = NAME
            else:
                log.warning(
                    "FinVADER lexicons not found (the news extra installs finvader): scoring news with plain VADER"
                )

    def compound(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.analyzer.polarity_scores(str(t))["compound"] for t in texts], dtype=np.float64)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) pseudo-probabilities: positive, negative, neutral (see module docstring)."""
        c = self.compound(texts)
        return np.column_stack([np.clip(c, 0, None), np.clip(-c, 0, None), 1.0 - np.abs(c)])


def labels_from_compound(compound: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    return np.where(compound > threshold, "positive", np.where(compound < -threshold, "negative", "neutral"))
