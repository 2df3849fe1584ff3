"""Each paper's finding next to what the transfer lab measured, as numbers and a verdict.

The papers' numbers are in ``PAPERS`` (from their text and figures, see
``../shared/ANCHORS.md``); the functions here read a ``LabResult`` from
``ftkit.lab.transfer_lab`` and return plain dicts that a notebook renders and a
test asserts on. "matched" means the *shape* (a sign, an ordering) agrees,
never that the numbers do: a 16k-parameter network on 28x28 clothes is not
AlexNet on ImageNet.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ftkit.data.shifts import shift_level
from ftkit.lab.transfer_lab import GROUPS, LabResult, surgical_table

__all__ = ["PAPERS", "lp_ft_findings", "surgical_findings", "yosinski_findings"]

PAPERS = {
    "yosinski": dict(
        cite="Yosinski et al. 2014, How transferable are features in deep neural networks?",
        base=0.625,
        AnB=(0.628, 0.624, 0.619, 0.600, 0.578, 0.581, 0.543),
        BnB=(0.627, 0.624, 0.621, 0.605, 0.594, 0.619, 0.623),
        anb_plus_gain=(0.01, 0.02),           # AnB+ over the base network, "+1 to +2 points"
    ),
    "lp_ft": dict(
        cite="Kumar et al. 2022, Fine-tuning can distort pretrained features and underperform "
             "out-of-distribution",
        ft_minus_lp_id=0.02, ft_minus_lp_ood=-0.07,       # averages over their data sets
        lpft_minus_ft_id=0.01, lpft_minus_ft_ood=0.10,
    ),
    "surgical": dict(
        cite="Lee et al. 2022, Surgical fine-tuning improves adaptation to distribution shifts",
        best={"input": "first block", "feature": "middle blocks", "output": "last layer"},
    ),
}
# Where each level's best group should be, in our network's groups (stem, block1-3, head).
_EXPECTED = {"input": ("stem", "block1"), "feature": ("block1", "block2"), "output": ("head",)}


def _mean(summary: pd.DataFrame, strategy: str, n: int) -> float:
    hit = summary[(summary.strategy == strategy) & (summary.n == n)]
    return float(hit["mean"].iloc[0]) if len(hit) else float("nan")


def yosinski_findings(result: LabResult) -> dict:
    """Our AnB/BnB/AnB+ curves reduced to the paper's three claims.

    Returns a dict with ``ns``, ``base``, per-condition curves (mean per n),
    ``anb_drop`` (AnB at the first n minus the last), ``bnb_dip`` (the lower
    of BnB's two ends minus its lowest middle point: > 0 means a dip),
    ``anb_plus_gain`` (mean of AnB+ over n, minus base), ``anb_plus_over_anb_last``
    (AnB+ minus AnB at the last n), the paper's numbers, and ``matched``.
    """
    s = result.summary()
    ns = sorted(int(n) for n in s.n.unique() if n > 0)
    curves = {c: [_mean(s, c, n) for n in ns] for c in ("AnB", "BnB", "AnB+", "BnB+")
              if (s.strategy == c).any()}
    base = _mean(s, "baseB", 0)
    out: dict = dict(ns=ns, base=base, curves=curves)
    p = PAPERS["yosinski"]
    paper = dict(base=p["base"], anb_drop=p["AnB"][0] - p["AnB"][-1],
                 bnb_dip=min(p["BnB"][0], p["BnB"][-1]) - min(p["BnB"][1:-1]),
                 anb_plus_gain=p["anb_plus_gain"])
    matched: dict[str, bool] = {}
    if "AnB" in curves:
        out["anb_drop"] = curves["AnB"][0] - curves["AnB"][-1]
        matched["AnB falls at high n"] = out["anb_drop"] > 0
    if "BnB" in curves and len(ns) >= 3:
        bnb = curves["BnB"]
        out["bnb_dip"] = min(bnb[0], bnb[-1]) - min(bnb[1:-1])
        matched["BnB dips in the middle"] = out["bnb_dip"] > 0
    if "AnB+" in curves:
        out["anb_plus_gain"] = float(np.mean(curves["AnB+"])) - base
        matched["AnB+ at or above the base network"] = out["anb_plus_gain"] >= 0
        if "AnB" in curves:
            out["anb_plus_over_anb_last"] = curves["AnB+"][-1] - curves["AnB"][-1]
            matched["fine-tuning recovers what freezing loses (AnB+ > AnB at the last n)"] = \
                out["anb_plus_over_anb_last"] > 0
    out.update(paper=paper, matched=matched)
    return out


def lp_ft_findings(result: LabResult) -> dict:
    """Mean ID and OOD accuracy per strategy and the paper's two differences, ours beside theirs."""
    means = result.runs.groupby("strategy")[["acc", "acc_ood"]].mean()
    id_, ood = means["acc"].to_dict(), means["acc_ood"].to_dict()
    ours = dict(ft_minus_lp_id=id_["FT"] - id_["LP"], ft_minus_lp_ood=ood["FT"] - ood["LP"],
                lpft_minus_ft_id=id_["LP-FT"] - id_["FT"], lpft_minus_ft_ood=ood["LP-FT"] - ood["FT"])
    p = PAPERS["lp_ft"]
    matched = {
        "FT beats LP in distribution": ours["ft_minus_lp_id"] > 0,
        "FT loses to LP out of distribution": ours["ft_minus_lp_ood"] < 0,
        "LP-FT beats FT out of distribution": ours["lpft_minus_ft_ood"] > 0,
    }
    return dict(id=id_, ood=ood, **ours, paper={k: v for k, v in p.items() if k != "cite"},
                matched=matched)


def surgical_findings(result: LabResult) -> dict:
    """Per shift: the best single group, its accuracy minus tuning all, and whether the level's
    predicted region (input: stem/block1, feature: block1/block2, output: head) won."""
    raw = surgical_table(result, relative=False)
    rows = {}
    for label, row in raw.iterrows():
        shift = str(label).split(" (")[0]
        level = shift_level(shift)
        single = row[list(GROUPS)].astype(float)
        best = str(single.idxmax())
        rows[shift] = dict(level=level, best=best, best_minus_all=float(single.max() - row["all"]),
                           first_minus_last=float(single["stem"] - single["head"]),
                           accs={g: float(single[g]) for g in GROUPS}, all=float(row["all"]),
                           none=float(row.get("none", np.nan)),
                           expected=list(_EXPECTED[level]), matched=best in _EXPECTED[level])
    return dict(shifts=rows, paper=PAPERS["surgical"]["best"])
