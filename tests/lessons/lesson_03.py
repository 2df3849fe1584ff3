"""Lesson 03: what its notebook must show (read by tests/test_notebooks.py)."""

from lessons import Lesson


def check_03(r: dict) -> None:
    # Margins: see notes/h9.md (fast runs, seeds 0-2, and the full run).
    f = {row["filters"]: row for row in r["filters"]}
    pre, rnd, ft = f["pretrained"], f["random init"], f["fine-tuned"]
    # Pretrained first-layer filters are far more structured than random ones ...
    assert pre["low_freq_energy"] > 1.5 * rnd["low_freq_energy"], (pre, rnd)
    assert pre["channel_coherence"] > 2.0 * rnd["channel_coherence"], (pre, rnd)
    # ... and fine-tuning leaves them almost as they were.
    assert abs(ft["channel_coherence"] - pre["channel_coherence"]) < 0.05, (pre, ft)
    # Probes: on each data set the lowest group is below the best middle or high group.
    for name, rows in r["probes"].items():
        acc = [row["val_acc"] for row in sorted(rows, key=lambda row: row["depth"])]
        upper = max(acc[len(acc) // 3:])
        assert acc[0] + 0.1 < upper, (name, acc)
        chance = 1.0 / r["num_classes"][name]
        assert upper > chance + 0.4, (name, acc)
    # After fine-tuning every layer, the first group keeps a higher CKA and drifts less than the last.
    moved = sorted(r["movement"], key=lambda row: row["depth"])
    first, last = moved[0], moved[-1]
    assert first["cka"] > last["cka"] + 0.1, (first, last)
    assert first["drift"] < 0.5 * last["drift"], (first, last)
    # Feature visualisation raised every target channel.
    assert all(e > s for s, e in zip(r["featviz"]["start"], r["featviz"]["end"])), r["featviz"]
    # Receptive fields grow with depth.
    rf = [row["size"] for row in sorted(r["receptive_fields"], key=lambda row: row["depth"])]
    assert rf == sorted(rf) and rf[0] < rf[-1], rf


LESSON = Lesson(notebook="03_features_by_depth.ipynb", parameters={"fast": True}, check=check_03)
