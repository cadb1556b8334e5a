"""Named market datasets (``source=bundled``, ``dataset=NAME``): what ``spx run`` trains on offline.

| name | bars | where | default horizons |
|---|---|---|---|
| ``spy_m1_2011q1`` (default) | real SPY one-minute bars, Jan + Mar 2011 | package data (Apache-2.0, see ``data/ATTRIBUTION.md``) | 30, 60 bars |
| ``spy_m5_2018_2020`` | real SPY five-minute bars, 2018-2020, regular session | ``../shared/data/market/`` only (GPL-3 source: never copied) | 6, 12 bars |
| ``arch`` | real daily S&P 500, 1999-2018 | the ``arch`` package | 1, 5 bars |

Every file's time stamps are UTC bar ends. A dataset may declare a documented data gap (the 2011 file
has no February): such a hole is accepted, and no bar is invented for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spx.core.choices import DATASET_NAMES
from spx.core.errors import DataValidationError

PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the project (CI and developer machines have it; a lone clone does not)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        candidate = root.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


@dataclass(frozen=True)
class Dataset:
    name: str
    granularity: str
    horizons: tuple[int, int]
    bronze_source: str
    description: str
    file: str = ""  # parquet path: package-relative ("pkg:...") or shared-relative ("shared:...")
    gaps: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # documented holes [from, to) in UTC

    def path(self) -> Path:
        kind, _, rel = self.file.partition(":")
        if kind == "pkg":
            return PACKAGE_DATA / rel
        shared = shared_data_dir()
        if shared is None:
            raise DataValidationError(
                f"dataset {self.name!r} is read from ../shared/data/{rel}, and no "
                f"../shared/data folder is beside the project"
            )
        path = shared / rel
        if not path.exists():
            raise DataValidationError(f"dataset {self.name!r}: {path} not found")
        return path

    def allowed_gaps(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        return [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in self.gaps]

    def load(self) -> pd.DataFrame:
        if self.name == "arch":
            from spx.components.bronze.market import load_bundled_daily

            return load_bundled_daily()
        return pd.read_parquet(self.path())


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "spy_m1_2011q1",
            "M1",
            (30, 60),
            "spy-m1-2011q1",
            "real SPY one-minute bars, January + March 2011 (no February in the source), bundled",
            file="pkg:spy_m1_2011q1.parquet",
            gaps=(("2011-02-01", "2011-03-01"),),
        ),
        Dataset(
            "spy_m5_2018_2020",
            "M5",
            (6, 12),
            "spy-m5-2018-2020",
            "real SPY five-minute bars 2018-2020, regular session (read from ../shared/data only)",
            file="shared:market/spy_m5_2018_2020.parquet",
        ),
        Dataset("arch", "D", (1, 5), "arch-sp500", "real daily S&P 500 1999-2018 from the arch package"),
    )
}
ALIASES = {
    "arch-sp500": "arch",
    "daily": "arch",
    "spy-m1-2011q1": "spy_m1_2011q1",
    "spy-m5-2018-2020": "spy_m5_2018_2020",
}
DEFAULT_DATASET = "spy_m1_2011q1"
if tuple(DATASETS) != DATASET_NAMES:  # the CLI offers DATASET_NAMES without importing this module
    raise RuntimeError(f"spx.core.choices.DATASET_NAMES {DATASET_NAMES} != the datasets defined here {tuple(DATASETS)}")


def get_dataset(name: str) -> Dataset:
    key = ALIASES.get(name or DEFAULT_DATASET, name or DEFAULT_DATASET)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[key]


def allowed_gaps_for_prefix(prefix: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Documented gaps of the dataset a bronze prefix (``.../bronze/market/{source}/...``) holds."""
    parts = prefix.split("/")
    if "market" in parts:
        i = parts.index("market")
        if i + 1 < len(parts):
            for d in DATASETS.values():
                if d.bronze_source == parts[i + 1]:
                    return d.allowed_gaps()
    return []
