"""Benchmark 6: how feature vectors and full fine-tuning scale, as curves.

The course says feature extraction suits a CPU. Here is that claim as two
curves, on the CPU, ``animals`` at 64 px:

* **images per class** (10, 30, 100, 300; MobileNetV2 with its ImageNet weights):
  wall time of *feature vectors* (``extract_features`` over the training set,
  cache off, then ``fit_feature_classifier(..., "logistic")``) vs *full
  fine-tuning* (``fit``: every weight trains, Adam 3e-4, ``epochs`` passes,
  batch 32, no evaluation);
* **model size** (MobileNetV2, EfficientNet-Lite0, torchvision ResNet-18 at
  random init -- the timing does not depend on the weights) at one size.

The two ways alternate inside every cell (features, fine-tune, fine-tune,
features...). Writes the figures and a plot (``scaling.png``).

    python -m bench.bench_scaling
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

from bench.common import RESULTS, interleave, machine, quick_mode
from ftkit.analysis.features import extract_features, fit_feature_classifier
from ftkit.data import load_dataset
from ftkit.models.heads import replace_head
from ftkit.models.zoo import load_backbone
from ftkit.training.loop import fit

MODELS = {"mobilenet_v2": True, "efficientnet_lite0": True, "resnet18": False}  # name -> pretrained


def features_time(model, data) -> None:
    fit_feature_classifier(extract_features(model, data, cache=False), "logistic")


def finetune_time(model, data, epochs: int) -> None:
    fit(model, data, None, optimizer="adam", lr=3e-4, epochs=epochs, batch_size=32, device="cpu", amp=False,
        precise_bn=False, progress=False)


def cell(backbone: str, n_per_class: int, *, image_size: int, epochs: int, repeats: int) -> dict:
    data = load_dataset("animals", "train", n_per_class=n_per_class, image_size=image_size)
    model = replace_head(load_backbone(backbone, pretrained=MODELS[backbone], allow_download=False).model, 10)
    reps = interleave({"features": lambda: features_time(model, data),
                       "finetune": lambda: finetune_time(model, data, epochs)}, repeats)
    f, t = [r["features"] for r in reps], [r["finetune"] for r in reps]
    return {"backbone": backbone, "n_per_class": n_per_class, "n_images": len(data),
            "features_s": [round(x, 3) for x in f], "finetune_s": [round(x, 3) for x in t],
            "features_median_s": round(statistics.median(f), 3), "finetune_median_s": round(statistics.median(t), 3),
            "finetune_over_features": round(statistics.median(t) / statistics.median(f), 2),
            "load": reps[-1]["load"]}


def plot(rows_n: list[dict], rows_m: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    n = [r["n_per_class"] for r in rows_n]
    for key, label in (("features_median_s", "feature vectors + logistic"), ("finetune_median_s", "full fine-tune")):
        a.plot(n, [r[key] for r in rows_n], "o-", label=label)
    a.set(xscale="log", yscale="log", xlabel="training images per class", ylabel="wall time, s",
          title="MobileNetV2: time vs data")
    a.legend()
    names = [r["backbone"] for r in rows_m]
    x = range(len(names))
    b.bar([i - 0.2 for i in x], [r["features_median_s"] for r in rows_m], 0.4, label="feature vectors + logistic")
    b.bar([i + 0.2 for i in x], [r["finetune_median_s"] for r in rows_m], 0.4, label="full fine-tune")
    b.set_xticks(list(x), names)
    b.set(ylabel="wall time, s", title=f"time vs model ({rows_m[0]['n_per_class']}/class)" if rows_m else "")
    b.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(*, sizes=(10, 30, 100, 300), model_n: int = 100, models=tuple(MODELS), image_size: int = 64,
        epochs: int = 3, repeats: int = 2, out: Path | None = None) -> dict:
    out = out or RESULTS / "scaling.png"
    cell("mobilenet_v2", 2, image_size=image_size, epochs=1, repeats=1)  # warm-up (imports, first calls), dropped
    rows_n = [cell("mobilenet_v2", n, image_size=image_size, epochs=epochs, repeats=repeats) for n in sizes]
    rows_m = [cell(m, model_n, image_size=image_size, epochs=epochs, repeats=repeats) for m in models]
    what = (f"feature vectors (extract + logistic) vs full fine-tune ({epochs} epochs, Adam, batch 32), "
            f"animals at {image_size} px, CPU, {repeats} interleaved repeats per cell")
    png = plot(rows_n, rows_m, out, what)
    return {"what": what, "settings": dict(sizes=list(sizes), model_n=model_n, models=list(models),
                                           image_size=image_size, epochs=epochs, repeats=repeats),
            "by_images_per_class": rows_n, "by_model": rows_m, "plot": str(png)}


def main(argv: list[str] | None = None) -> int:
    quick = quick_mode() or "--quick" in (argv or sys.argv[1:])
    res = run(sizes=(4, 8), model_n=4, image_size=32, epochs=1, repeats=1) if quick else run()
    print(machine())
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
