"""KFP component: champion selection and MLflow registration."""

from kfp.dsl import HTML, Markdown, Output

from spx.core.component import spx_component


@spx_component
def select_champion(
    run_id: str,
    expected_variants: list,
    min_oot_auc: float,
    max_overfit_gap: float,
    min_auc_ci_low: float,
    ranking: Output[Markdown],
    verdict: Output[Markdown],
    champion_report: Output[HTML],
    max_auc: float = 0.60,
    max_abs_ic: float = 0.20,
    max_sharpe_excess: float = 6.0,
    champion_horizon: int = 0,
) -> str:
    """Rank the variants on the validation block (leakage suspects refused), register the winner as MLflow
    alias `champion` with its verdict; returns the selection URI.

    Outputs: ``ranking`` (every variant), ``verdict`` (the champion's verdict with its validation and OOT
    intervals and the baselines, or why there is none) and ``champion_report`` (the champion's training report
    with that verdict on top)."""
    import html

    from spx.components.selection.select import ranking_markdown
    from spx.components.selection.select import select_champion as run_select
    from spx.components.selection.verdict import champion_row, facts, selection_markdown
    from spx.components.training.visuals import with_verdict
    from spx.core import layout
    from spx.core.logs import stage_logging
    from spx.core.settings import settings
    from spx.core.storage import ObjectStore

    cfg = settings()
    store = ObjectStore()
    uri, selection = run_select(
        store,
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
    with open(verdict.path, "w") as fh:
        fh.write(selection_markdown(selection))
    row = champion_row(selection)
    page = "<!DOCTYPE html><html><body><h1>No new champion</h1><p>{}</p></body></html>".format(
        html.escape(str(selection.get("reason", "")))
    )
    if row is not None:
        key = layout.model_key(run_id, row["variant"], "report.html")
        if store.exists(key):
            page = with_verdict(store.get_bytes(key).decode(), facts(row))
        verdict.metadata.update({k: v for k, v in facts(row).items() if v is not None})
        verdict.metadata["model_version"] = str(row.get("model_version", ""))
    with open(champion_report.path, "w") as fh:
        fh.write(page)
    return uri
