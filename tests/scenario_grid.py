"""A synthetic, hand-made scenario grid shared by the scenario and advisor tests (no test_ prefix)."""
import pandas as pd

from ftkit.lab.scenarios import ScenarioConfig, ScenarioResult


def make_grid(accs: dict, *, scores: dict, lr_tables: dict | None = None, **config) -> ScenarioResult:
    """accs: {(dataset, n, strategy): [acc per seed]}; scores: {dataset: similarity score}."""
    rows = [{"dataset": d, "n_per_class": n, "strategy": s, "seed": i, "acc": a, "lr": 1e-3, "steps": 10,
             "time_s": 1.0, "stopped_reason": None}
            for (d, n, s), values in accs.items() for i, a in enumerate(values)]
    sim = pd.DataFrame([{"dataset": d, "catalogue": None, "pretrained_acc": 0.9, "pixel_acc": 0.9 - v, "score": v}
                        for d, v in scores.items()])
    cfg = ScenarioConfig(datasets=tuple(scores), **config)
    import dataclasses
    return ScenarioResult(runs=pd.DataFrame(rows), lrs={}, lr_tables=lr_tables or {}, similarity=sim,
                          config=dataclasses.asdict(cfg))
