"""Size of the serving plane and the prediction log, counted the way issue 16 counts it: every line of the
non-test Python files whose path names serving, the sink or the prediction log (outside tests/ and bench/); code
lines = lines holding code (not blank, not only a comment, not a docstring). Each top-level definition is
infrastructure (HTTP, transport, durability, process plumbing, speed-ups) or domain (the model, the features, the
answer, what a log row is and how it is read back, the servers' configuration); the table below says which, so the
split can be checked and rerun on any checkout (``--root``).

    python bench/lines.py [--root DIR]                          # DIR: a checkout (default: this one)
    python bench/lines.py --also components/feature_store      # plus the Feast store that left serving/features.py
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path

# file -> infrastructure share: "all", "none", or the top-level names that are infrastructure
INFRA = {
    "components/serving/server.py": "all",  # the KServe/uvicorn adapter
    "components/serving/client.py": "all",  # the transformer's HTTP client
    "components/serving/local.py": "all",  # local processes
    "components/prediction_log/writer.py": {"LogUnavailable", "_metrics", "_default_store", "PredictionLog"},
    "components/serving/predictor.py": {"_dense_predictor"},  # the direct booster call (a speed-up)
    # the former plane (for counting an older checkout)
    "components/serving/http_common.py": "all",
    "components/serving/http_client.py": "all",
    "components/serving/cloudevents.py": "all",
    "components/monitoring/sink.py": "all",
}
# methods of a domain class that are transport (the transformer's calls to its predictor)
INFRA_METHODS = {
    ("components/serving/transformer.py", "FeastTransformer"): {
        "_wait_for_predictor",
        "client",
        "refresh_predictor_metadata",
        "upstream_ready",
        "predict",
    },
}


def code_lines(source: str) -> set[int]:
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines - docstrings


def infra_lines(rel: str, source: str) -> set[int]:
    rule = INFRA.get(rel, "none")
    tree = ast.parse(source)
    if rule == "all":
        return set(range(1, len(source.splitlines()) + 1))
    out: set[int] = set()
    for node in tree.body:
        name = getattr(node, "name", None)
        if rule != "none" and name in rule:
            out.update(range(node.lineno, node.end_lineno + 1))
        for method in INFRA_METHODS.get((rel, name), ()):
            for sub in getattr(node, "body", []):
                if getattr(sub, "name", None) == method:
                    start = min([sub.lineno] + [d.lineno for d in getattr(sub, "decorator_list", [])])
                    out.update(range(start, sub.end_lineno + 1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--also", action="append", default=[], help="count the Python files under this path too")
    args = parser.parse_args()
    root = Path(args.root)
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not {"tests", "bench", ".venv", ".git", "build"} & set(p.relative_to(root).parts)
        and any(k in str(p.relative_to(root)) for k in ("serving", "sink", "prediction_log", *args.also))
    )
    total = code = infra = 0
    print(f"{'file':<44} {'lines':>6} {'code':>6} {'infra':>6}")
    for path in files:
        rel = str(path.relative_to(root))
        source = path.read_text()
        lines, c = len(source.splitlines()), code_lines(source)
        i = len(c & infra_lines(rel, source))
        total, code, infra = total + lines, code + len(c), infra + i
        print(f"{rel:<44} {lines:>6} {len(c):>6} {i:>6}")
    print(f"{'total':<44} {total:>6} {code:>6} {infra:>6}   infrastructure {infra / max(code, 1):.0%} of code lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
