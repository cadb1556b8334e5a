"""Shared pieces of the news tests: the fixture files and a tiny BERT classifier built from a config
(random weights: it tests FinBERT's plumbing, not its accuracy)."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

# Vocabulary for the tiny tokenizer: BERT specials + words of the fixtures (+ a few wordpieces).
TINY_WORDS = """the a of to in on as and after for is not over fed rate rates cut cuts hike stocks stock
market markets wall street rises rally rallied signals signal investors bet record high gains climbs
falls fall fell yields inflation powell warns fight tumble oil jump dow jones nasdaq s p 500 treasury
patience higher steady holds still sees three this year decision banks bank earnings beat profits
expectations crude prices slides demand worries . , ; : - & ' % 0 1 2 3 4 5 6 7 8 9 ##s ##ed ##ing""".split()


def build_tiny_model(
    path: Path, labels: tuple[str, ...] = ("positive", "negative", "neutral"), seed: int = 0, max_positions: int = 64
) -> Path:
    """A 2-layer, 32-wide BERT classifier with random weights + a WordPiece vocab written here,
    saved in the layout ProsusAI/finbert uses (config.json, weights, vocab.txt, tokenizer_config)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(TINY_WORDS)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": max_positions, "tokenizer_class": "BertTokenizer"})
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
    )
    model = BertForSequenceClassification(config)
    # make the classes distinguishable so label-order mistakes show up in the tests
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([3.0 * (i - 1) for i in range(len(labels))]))
    model.save_pretrained(path)
    return path
