"""KFP component: champion selection and MLflow registration."""

from kfp.dsl import Markdown, Output

from spx.core.component import spx_component


@spx_component
def select_champion(
    run_id: str,
    expected_variants: list,
    min_oot_auc: float,
    max_overfit_gap: float,
    min_auc_ci_low: float,
    ranking: Output[Markdown],
    max_auc: float = 0.60,
    max_abs_ic: float = 0.20,
    max_sharpe_excess: float = 6.0,
    champion_horizon: int = 0,
) -> str:
    """Rank the variants on the validation block (leakage suspects refused), register the winner as MLflow
    alias `champion` with its verdict; returns the selection URI."""
    from spx.components.selection.select import ranking_markdown
    from spx.components.selection.select import select_champion as run_select
    from spx.core.logs import stage_logging
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    cfg = settings()
    uri, selection = run_select(
        ObjectStore(),
        run_id=run_id,
        expected_variants=list(expected_variants),
        min_oot_auc=min_oot_auc,
        max_overfit_gap=max_overfit_gap,
        min_auc_ci_low=min_auc_ci_low,
        max_auc=max_auc,
        max_abs_ic=max_abs_ic,
        max_sharpe_excess=max_sharpe_excess,
        champion_horizon=champion_horizon,
        registered_model=cfg.registered_model,
        tracking_uri=cfg.mlflow_tracking_uri,
        progress=stage_logging("spx.select").info,
    )
    with open(ranking.path, "w") as fh:
        fh.write(ranking_markdown(selection))
    return uri
