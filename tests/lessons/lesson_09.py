"""Lesson 09: what its notebook must show (read by tests/test_notebooks.py).

The margins below were measured at the fast settings on seeds (0, 1) and (2, 3)
(see notes/h11.md); each check asserts a shape with several points to spare.
"""

from lessons import Lesson


def check_09(r: dict) -> None:
    y = r["yosinski"]
    anb, anb_plus = y["curves"]["AnB"], y["curves"]["AnB+"]
    # Yosinski: frozen A features are worse for B at the last n than at n = 1 (measured: 0.21 lower) ...
    assert anb[-1] < anb[0] - 0.08, anb
    # ... and fine-tuning them (AnB+) recovers it at high n (measured: 0.21 higher).
    assert anb_plus[-1] > anb[-1] + 0.08, (anb_plus, anb)
    assert all(0.2 <= v <= 1 for v in anb + anb_plus)          # chance is 0.2 (5 classes)
    # One budget: every Yosinski run made the same number of optimizer steps.
    assert len(r["yosinski_steps"]) == 1, r["yosinski_steps"]

    s = r["surgical"]["shifts"]
    # Surgical fine-tuning, input-level shift: tuning only the first group beats tuning only the
    # last one (measured: 0.80 vs 0.73) -- "freeze the low layers" is the wrong advice here.
    assert s["noise"]["accs"]["stem"] > s["noise"]["accs"]["head"] + 0.03, s["noise"]
    # Output-level shift (permuted labels): the head is the best single group (measured: 0.90 vs 0.79).
    assert s["label_permutation"]["best"] == "head", s["label_permutation"]
    assert s["label_permutation"]["accs"]["head"] > s["label_permutation"]["accs"]["block3"] + 0.04

    # LP-FT from A: the numbers exist for every strategy; fine-tuning beats the probe in distribution
    # (measured: 0.88 vs 0.67 -- A's features never saw a shoe).
    f = r["lp_ft"]["A"]
    assert set(f["id"]) == set(f["ood"]) == {"LP", "FT", "LP-FT"}
    assert f["id"]["FT"] > f["id"]["LP"] + 0.08, f["id"]
    assert r["fast"] is True


LESSON = Lesson(notebook="09_transfer_lab.ipynb", parameters={"fast": True}, check=check_09)
