"""Sentiment scorers: accuracy on Financial PhraseBank, agreement with FinBERT, and FinBERT speed.

**Evaluation (default)** — every available scorer (FinVADER lexicons + VADER: the offline default;
plain VADER; TextBlob; the project's LM-style tone lexicon; FinBERT when ``SPX_FINBERT_MODEL`` names a
model; the always-neutral baseline) on Financial PhraseBank v1.0 (``../shared/data/eval/``, CC BY-NC-SA:
read in place for evaluation only, never copied), accuracy and macro-F1 on the all-agree and 50%-agree
subsets; then the agreement of the lexicon scorer with FinBERT's own probabilities on the GDELT
headlines of ``../shared/data/news/gdelt_hourly_finbert_signals_2020_2025.parquet`` in hours with one
article (where the hour's probabilities are FinBERT's for that headline), English headlines only.

    python bench/sentiment.py                        # evaluation
    python bench/sentiment.py --speed                # FinBERT-sized speed benchmark (below)

**Speed (``--speed``)** — FinBERT scoring speed on CPU: articles/s by batch size and precision,
1000-article runs, cache rerun.

The model is bert-base sized (``BertConfig()`` defaults: 12 layers, 768 wide, 30,522-token vocab,
~110 M parameters, 3 labels ordered as ProsusAI/finbert) with *random* weights — speed only, no
accuracy. Articles are synthetic market headlines, half with a one-to-three sentence summary
(the shapes GDELT and RSS deliver). Scoring goes through the production code
(:class:`spx.components.news.finbert.FinBertScorer` and :func:`score_texts` with the score cache in a
real S3 server — SeaweedFS on loopback).

    python bench/sentiment.py                        # 2 threads, fp32 + int8, batch 1..64
    python bench/sentiment.py --precisions fp32 --articles 1000 --threads 2

Target (issue #5): 1000 articles <= 20 s on 2 CPU cores; a rerun over scored articles ~ 0 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUBJECTS = [
    "Stocks",
    "The S&P 500",
    "Wall Street",
    "The Dow",
    "Nasdaq futures",
    "Treasury yields",
    "Oil",
    "Bank shares",
    "Tech stocks",
    "The dollar",
    "Small caps",
    "Energy shares",
    "Chipmakers",
]
VERBS = ["rally", "slump", "edge higher", "fall", "climb", "tumble", "rebound", "slip", "surge", "steady"]
CAUSES = [
    "after the Fed holds rates",
    "as inflation cools",
    "on strong jobs data",
    "as Powell warns on prices",
    "ahead of earnings",
    "on recession fears",
    "as bond yields jump",
    "after CPI beats forecasts",
    "on hopes of rate cuts",
    "as oil prices spike",
    "after weak retail sales",
    "on trade worries",
]
SENTENCES = [
    "Investors weighed fresh economic data against comments from Federal Reserve officials.",
    "Traders now price in two quarter-point cuts by December, according to futures markets.",
    "Analysts said the move reflected positioning ahead of the central bank's next meeting.",
    "Volume was light, with about 10 billion shares changing hands on US exchanges.",
    "The benchmark index is up 8% so far this year, led by large technology companies.",
    "Earnings from the biggest banks beat expectations on strong trading revenue.",
    "Concerns about the labour market and consumer spending weighed on cyclical sectors.",
    "The 10-year Treasury yield rose five basis points to 4.3%, its highest in a month.",
]


def synthetic_articles(n: int, seed: int = 7) -> list[str]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        title = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(CAUSES)} (story {i})"
        if rng.random() < 0.5:
            title += ". " + " ".join(rng.sample(SENTENCES, rng.randint(1, 3)))
        out.append(title)
    return out


def build_bert_base(path: Path) -> Path:
    """bert-base with random weights + a 30,522-entry WordPiece vocab covering the corpus words."""
    import json
    import re

    import torch
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        num_labels=3,
        id2label={0: "positive", 1: "negative", 2: "neutral"},
        label2id={"positive": 0, "negative": 1, "neutral": 2},
    )
    words = sorted(
        {
            w
            for text in SUBJECTS + VERBS + CAUSES + SENTENCES
            for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]", text.lower())
        }
        | set("0123456789")
    )
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab += [f"[unused{i}]" for i in range(config.vocab_size - len(vocab))]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"})
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def _phrasebank(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        text, sep, label = line.rpartition("@")
        if sep and label.strip() in ("positive", "negative", "neutral"):
            texts.append(text.strip())
            labels.append(label.strip())
    return texts, labels


def _scorers() -> dict:
    """name -> function(texts) -> labels (positive / negative / neutral)."""
    import numpy as np

    from spx.components.news.finbert import LABELS, configured_model
    from spx.components.news.lexicon_scorer import LexiconScorer, labels_from_compound
    from spx.components.news.silver import textblob_scores, tone_scores

    fin = LexiconScorer(financial=True)
    plain = LexiconScorer(financial=False)
    out = {
        f"FinVADER lexicons + VADER — offline default (lexicons: "
        f"{'finvader package files' if 'package' in fin.lexicon_source else fin.lexicon_source})": lambda t: (
            labels_from_compound(fin.compound(t))
        ),
        "VADER alone": lambda t: labels_from_compound(plain.compound(t)),
        "TextBlob polarity (±0.05)": lambda t: labels_from_compound(np.array([textblob_scores(x)[0] for x in t])),
        "project LM-style tone lexicon (lm_tone sign)": lambda t: labels_from_compound(
            np.array([tone_scores(x)["lm_tone"] for x in t]), threshold=0.0
        ),
        "always neutral": lambda t: np.array(["neutral"] * len(t)),
    }
    if configured_model():
        from spx.components.news.finbert import FinBertScorer, resolve_model

        scorer = FinBertScorer(resolve_model(), precision="fp32")
        out[f"FinBERT ({configured_model()})"] = lambda t: np.array(LABELS)[scorer.predict(list(t)).argmax(axis=1)]
    return out


def evaluate() -> int:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    from spx.components.bronze.datasets import shared_data_dir
    from spx.components.news.lexicon_scorer import LexiconScorer, labels_from_compound
    from spx.components.news.silver import looks_english

    shared = shared_data_dir()
    if shared is None:
        print(
            "../shared/data is not beside the project: nothing to evaluate on (Financial PhraseBank and the "
            "GDELT FinBERT reference live there, never in the project)"
        )
        return 1
    scorers = _scorers()
    fpb = shared / "eval" / "financial_phrasebank"
    sets = {name: _phrasebank(fpb / f"Sentences_{name}.txt") for name in ("AllAgree", "50Agree")}
    print("## Financial PhraseBank v1.0 (Malo et al. 2014; CC BY-NC-SA, evaluation only, read in place)\n")
    print(
        "| scorer | all-agree (n = %d) acc / macro-F1 | 50%%-agree (n = %d) acc / macro-F1 | sentences/s |"
        % (len(sets["AllAgree"][0]), len(sets["50Agree"][0]))
    )
    print("|---|---|---|---|")
    for name, fn in scorers.items():
        cells, rate = [], 0.0
        for texts, labels in sets.values():
            t = time.perf_counter()
            pred = fn(texts)
            rate = len(texts) / max(time.perf_counter() - t, 1e-9)
            cells.append(f"{accuracy_score(labels, pred):.3f} / {f1_score(labels, pred, average='macro'):.3f}")
        print(f"| {name} | {cells[0]} | {cells[1]} | {rate:,.0f} |", flush=True)

    gdelt = shared / "news" / "gdelt_hourly_finbert_signals_2020_2025.parquet"
    frame = pd.read_parquet(gdelt)
    one = frame[(frame["article_count"] == 1) & frame["latest_headline"].notna()].copy()
    one = one[one["latest_headline"].astype(str).map(looks_english)]
    lex = LexiconScorer()
    compound = lex.compound(one["latest_headline"].astype(str).tolist())
    fin_sent = (one["positive_prob"] - one["negative_prob"]).to_numpy()
    fin_label = np.array(["positive", "negative", "neutral"])[
        one[["positive_prob", "negative_prob", "neutral_prob"]].to_numpy().argmax(axis=1)
    ]
    lex_label = labels_from_compound(compound)
    from scipy import stats

    print(f"\n## Agreement with FinBERT on GDELT headlines (hours with one article, English only: n = {len(one):,})\n")
    print("| measure | value |\n|---|---|")
    print(
        f"| Pearson r (lexicon compound vs FinBERT positive − negative) | {np.corrcoef(compound, fin_sent)[0, 1]:.3f} |"
    )
    print(f"| Spearman rho | {stats.spearmanr(compound, fin_sent).statistic:.3f} |")
    print(f"| label agreement (lexicon ±0.05 rule vs FinBERT argmax) | {np.mean(lex_label == fin_label):.3f} |")
    print(f"| Cohen's kappa | {cohen_kappa_score(fin_label, lex_label):.3f} |")
    print(
        "| FinBERT label shares (pos/neg/neu) | "
        + " / ".join(f"{np.mean(fin_label == c):.2f}" for c in ("positive", "negative", "neutral"))
        + " |"
    )
    print(
        "| lexicon label shares (pos/neg/neu) | "
        + " / ".join(f"{np.mean(lex_label == c):.2f}" for c in ("positive", "negative", "neutral"))
        + " |"
    )
    return 0


def main() -> int:
    if "--speed" not in sys.argv:
        return evaluate()
    sys.argv.remove("--speed")
    return speed_main()


def speed_main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=1000)
    ap.add_argument("--sweep-articles", type=int, default=64, help="articles per batch-size point")
    ap.add_argument("--batch-sizes", default="1,8,16,32,64")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--batch-size", type=int, default=32, help="batch size of the 1000-article runs")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from spx.core.settings import set_environ

    set_environ(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from spx.components.news.finbert import FinBertScorer, score_texts
    from spx.components.news.schema import content_hash
    from spx.core.services import LocalS3Server
    from spx.core.storage import ObjectStore

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    texts = synthetic_articles(args.articles)
    frame = pd.DataFrame({"text": texts, "text_hash": [content_hash(t, "") for t in texts]})
    load = os.getloadavg()[0]
    print(
        f"# FinBERT-sized (bert-base, random weights) scoring on {args.threads} CPU threads "
        f"(torch {torch.__version__}; 1-min load average at start {load:.2f} on {os.cpu_count()} cores)"
    )

    with tempfile.TemporaryDirectory(prefix="spx-bench-sentiment-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        model_dir = build_bert_base(tmp / "bert-base")
        print(
            f"model built and saved in {time.perf_counter() - t:.1f}s "
            f"({sum(p.stat().st_size for p in model_dir.iterdir()) / 1e6:.0f} MB)"
        )
        scorer = FinBertScorer(model_dir, max_length=args.max_length)
        lengths = np.array(
            [len(ids) for ids in scorer.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
        )
        print(
            f"{len(texts)} articles: tokens per article mean {lengths.mean():.1f}, median "
            f"{np.median(lengths):.0f}, p95 {np.percentile(lengths, 95):.0f}, max {lengths.max()} "
            f"(max_length {args.max_length})"
        )

        sweep = texts[: args.sweep_articles]
        print(f"\n## articles/s by batch size ({len(sweep)} articles per point)")
        print("| precision | " + " | ".join(f"bs={b}" for b in batch_sizes) + " |")
        print("|---|" + "---|" * len(batch_sizes))
        for precision in precisions:
            sc = FinBertScorer(model_dir, max_length=args.max_length, precision=precision)
            sc.predict(sweep[:4])  # warm-up
            cells = []
            for bs in batch_sizes:
                sc.batch_size = bs
                t = time.perf_counter()
                sc.predict(sweep)
                cells.append(f"{len(sweep) / (time.perf_counter() - t):.1f}")
            print(f"| {precision} | " + " | ".join(cells) + " |", flush=True)

        print(
            f"\n## {len(texts)} articles end to end (score_texts: cache lookup in S3, model load, "
            f"batch {args.batch_size}, cache write), then a rerun"
        )
        with LocalS3Server(data_dir=tmp / "s3", buckets=("bench",)) as server:
            set_environ(**server.env(), SPX_BUCKET="bench", SPX_HOME=str(tmp / "home"))
            store = ObjectStore()
            print(
                "| precision | first run s | articles/s | model s | rerun s | rerun scored | 1000 articles s | "
                "target <= 20 s |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for precision in precisions:
                t = time.perf_counter()
                _, first = score_texts(
                    frame,
                    model_location=str(model_dir),
                    store=store,
                    batch_size=args.batch_size,
                    max_length=args.max_length,
                    precision=precision,
                )
                first_s = time.perf_counter() - t
                t = time.perf_counter()
                _, again = score_texts(
                    frame,
                    model_location=str(model_dir),
                    store=store,
                    batch_size=args.batch_size,
                    max_length=args.max_length,
                    precision=precision,
                )
                rerun_s = time.perf_counter() - t
                per_1000 = first_s * 1000 / len(texts)
                print(
                    f"| {precision} | {first_s:.1f} | {len(texts) / first_s:.1f} | {first.model_seconds:.1f} | "
                    f"{rerun_s:.2f} | {again.scored} | {per_1000:.1f} | {'met' if per_1000 <= 20 else 'missed'} |",
                    flush=True,
                )
    print(f"\n1-min load average at end {os.getloadavg()[0]:.2f} (other processes share these cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
