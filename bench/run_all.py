"""``make bench``: every benchmark, one JSON file and one markdown table.

Runs the parts in one go on this machine and writes ``bench/results/latest.json``
and ``latest.md`` (``quick.json`` / ``quick.md`` in quick mode), then prints the
table. Each part records the load average before and after it: figures taken
while other work ran on the machine are disturbed, and the table says so.

    python -m bench.run_all                        # full sizes (long: the notebooks alone take a while)
    BENCH_QUICK=1 python -m bench.run_all          # tiny sizes, a smoke test
    python -m bench.run_all --only fit features    # some parts

Parts: fit (1), features (2), fastai (3, in the fastai virtualenv made by
``bench/fastai_env.sh``), lr_finder (4), notebooks (5), scaling (6), sweep (7),
heap (8).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench.common import RESULTS, ROOT, fmt, load, machine, part, quick_mode, write_json, write_text

FASTAI_VENV = ROOT / ".venv-fastai"
BINDER_MB = 1024


# ---------------------------------------------------------------- the parts

def part_fit(quick: bool) -> dict:
    from bench import bench_fit
    return bench_fit.run(steps=6, repeats=2, n_per_class=10, image_size=32) if quick else bench_fit.run()


def part_features(quick: bool) -> dict:
    from bench import bench_features
    if quick:
        return bench_features.run(n_per_class=6, test_per_class=4, image_size=32, epochs=2, repeats=1)
    return bench_features.run()


def fastai_python() -> Path:
    """The fastai virtualenv's python, made by bench/fastai_env.sh when missing."""
    py = FASTAI_VENV / "bin" / "python"
    if not (FASTAI_VENV / ".fastai-ready").exists():
        base = Path(sys.prefix)
        subprocess.run(["bash", str(ROOT / "bench" / "fastai_env.sh"), str(base), str(FASTAI_VENV)], check=True)
    return py


def part_fastai(quick: bool, out_dir: Path) -> dict:
    out = out_dir / ("fastai_quick.json" if quick else "fastai.json")
    cmd = [str(fastai_python()), "-m", "bench.bench_fastai", "--json", str(out)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"bench_fastai failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(out.read_text())


def part_lr_finder(quick: bool) -> dict:
    from bench import bench_lr_finder
    if quick:
        return bench_lr_finder.run(quick=True, repeats=1, num_iter=10, size=16)
    return bench_lr_finder.run()


def part_notebooks(quick: bool) -> dict:
    from bench import bench_notebooks
    if quick:  # fast settings of one notebook: the smoke test of the measuring code
        rows = [bench_notebooks.run("00_tour.ipynb", fast=True)]
    else:
        names = sorted(p.name for p in bench_notebooks.NOTEBOOKS.glob("*.ipynb"))
        # full runs as on Binder (about one core each), two at a time on this 2-core machine;
        # fast runs one at a time at torch's default threads, as the tests run them
        full = sorted(bench_notebooks.run_many(names, False, jobs=2, threads=1), key=lambda r: r["notebook"])
        rows = full + [bench_notebooks.run(n, fast=True) for n in names]
    full = [r for r in rows if r["mode"] == "full"]
    fast = [r for r in rows if r["mode"] == "fast"]
    return {"what": "each notebook under papermill: wall time, CPU time and peak RSS (all, and anonymous only) of "
                    "the kernel's process tree (polled every 0.2 s); full runs at 1 torch thread, two at a time"
                    + ("; quick mode: 00_tour fast only" if quick else ""),
            "rows": rows,
            "failed": [r["notebook"] + "/" + r["mode"] for r in rows if r["rc"] and not r.get("timed_out")],
            "stopped": [r["notebook"] + "/" + r["mode"] for r in rows if r.get("timed_out")],
            "full_total_s": round(sum(r["wall_s"] for r in full), 1),
            "fast_total_s": round(sum(r["wall_s"] for r in fast), 1),
            "max_peak_mb": round(max(r["peak_mb"] for r in rows), 1),
            "max_peak_anon_mb": round(max(r["peak_anon_mb"] for r in rows), 1),
            "over_binder": [r["notebook"] for r in full if r["peak_mb"] > BINDER_MB],
            "goal": f"peak <= {BINDER_MB} MB each (full settings)"}


def part_scaling(quick: bool, out_dir: Path) -> dict:
    from bench import bench_scaling
    png = out_dir / ("scaling_quick.png" if quick else "scaling.png")
    if quick:
        return bench_scaling.run(sizes=(3, 6), model_n=3, image_size=32, epochs=1, repeats=1, out=png)
    return bench_scaling.run(out=png)


def part_sweep(quick: bool, out_dir: Path) -> dict:
    out = out_dir / ("sweep_quick.json" if quick else "sweep.json")
    cmd = [sys.executable, str(ROOT / "bench" / "bench_sweep.py"), "--json", str(out)]
    if quick:
        cmd += ["--runs", "4", "--n-per-class", "3", "--val-per-class", "2", "--image-size", "32", "--epochs", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"bench_sweep failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return json.loads(out.read_text())


def part_heap(quick: bool) -> dict:
    from bench import bench_heap
    return bench_heap.run(sizes="5", steps=2, repeats=1) if quick else bench_heap.run()


PARTS = ("fit", "features", "fastai", "lr_finder", "notebooks", "scaling", "sweep", "heap")


def run_parts(names, quick: bool, out_dir: Path, on_part: Callable[[list[dict]], None] = lambda done: None
              ) -> list[dict]:
    """Run the named parts in order; ``on_part(results so far)`` after each (the files are rewritten)."""
    fns: dict[str, Callable[[], dict]] = {
        "fit": lambda: part_fit(quick), "features": lambda: part_features(quick),
        "fastai": lambda: part_fastai(quick, out_dir), "lr_finder": lambda: part_lr_finder(quick),
        "notebooks": lambda: part_notebooks(quick), "scaling": lambda: part_scaling(quick, out_dir),
        "sweep": lambda: part_sweep(quick, out_dir), "heap": lambda: part_heap(quick)}
    results: list[dict] = []
    for name in names:
        print(f"[bench] {name} ... (load {load()[0]})", flush=True)
        results.append(part(name, fns[name]))
        print(f"[bench] {name} done in {results[-1]['part_wall_s']} s", flush=True)
        on_part(results)
    return results


# ---------------------------------------------------------------- the table

def summary(p: dict) -> tuple[str, str, str]:
    """(figure, goal, met) of one part, for the table."""
    if "error" in p:
        return f"ERROR: {p['error'][:160]}", "-", "no"
    name = p["name"]
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    if name == "fit":
        return (f"ftkit/hand time {p['median_ratio']:.3f}x (repeats {', '.join(f'{r:.3f}' for r in p['ratios'])}); "
                f"{p['ms_per_step_extra']:+.1f} ms/step; max weight diff {p['max_weight_diff']:.1e}",
                p["goal"], yes(p["met"]))
    if name == "features":
        return (f"speed-up {p['median_speedup_cold']:.2f}x cold, {p['median_speedup_hit']:.2f}x cache hit; "
                f"accuracy features {p['acc_features']:.3f} vs tutorial {p['acc_tutorial']:.3f}",
                p["goal"], yes(p["met"]))
    if name == "fastai":
        ident, own, lf = p["ftkit_identical"], p["ftkit_own"], p["lr_find"]
        plain = p.get("ftkit_own_plain")
        return (f"identical recipe: {ident['median_time_ratio']:.3f}x time, {ident['mean_acc_diff']:+.3f} acc; "
                f"ftkit LP-FT: {own['median_time_ratio']:.3f}x, {own['mean_acc_diff']:+.3f} acc"
                + (f" (without precise BN {plain['median_time_ratio']:.3f}x, {plain['mean_acc_diff']:+.3f})"
                   if plain else "") + " "
                f"(fastai acc {p['fastai_mean_acc']:.3f}); lr_find {lf['time_ratio']:.3f}x time, suggestions "
                + ", ".join(f"{k} {v:.2g} vs {lf['fastai'][k]:.2g}" for k, v in lf["ftkit"].items() if v),
                "<= 1.0x at >= accuracy", f"identical {yes(ident['met'])}, LP-FT {yes(own['met'])}"
                + (f", LP-FT without precise BN {yes(plain['met'])}" if plain else ""))
    if name == "lr_finder":
        return (f"ftkit/torch-lr-finder time {p['median_ratio']:.3f}x; saved state "
                f"{p['saved_copies']['ftkit']:.2f} copies", "keep (~1x)", "-")
    if name == "notebooks":
        fig = (f"max peak {p['max_peak_mb']:.0f} MB ({p.get('max_peak_anon_mb', float('nan')):.0f} MB anonymous); "
               f"fast total {p['fast_total_s']:.0f} s")
        if p["full_total_s"]:
            fig += f"; full total {p['full_total_s']:.0f} s"
        if p["failed"]:
            fig += f"; FAILED {p['failed']}"
        if p.get("stopped"):
            fig += f"; stopped at the per-notebook limit, unfinished (peak until then) {p['stopped']}"
        return fig, p["goal"], yes(not p["over_binder"] and not p["failed"] and not p.get("stopped"))
    if name == "scaling":
        rn, rm = p["by_images_per_class"], p["by_model"]
        return ("fine-tune/features time: " + ", ".join(f"{r['n_per_class']}/class {r['finetune_over_features']}x"
                                                        for r in rn)
                + "; " + ", ".join(f"{r['backbone']} {r['finetune_over_features']}x" for r in rm)
                + f"; plot {Path(p['plot']).name}", "curve", "-")
    if name == "sweep":
        return (f"in-process/cluster time {p['median_ratio_in_process_over_cluster']:.2f}x over {p['runs']} runs, "
                f"{p['workers']} workers; same table {p['same_table']}", "report", "-")
    if name == "heap":
        return (f"ftkit's 1 MiB mmap threshold / glibc's: time {p['time_ratio']:.2f}x, peak anonymous memory "
                f"{p['peak_ratio']:.2f}x ({p['peak_saved_mb']:.0f} MB saved) over a {p['settings']['steps']}-step "
                f"lesson-07 grid of {p['settings']['data']}", "report", "-")
    return "?", "-", "-"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"Measured {report['date']} with `{report['command']}`"
             + (" (quick mode: tiny sizes, a smoke test, not figures)" if report["quick"] else ""),
             f"on {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads)"
             + (f", GPU {m['cuda']}" if m.get("cuda") else "")
             + f"; load average {report['load_before'][0]} before, {report['load_after'][0]} after "
               "(other work on a shared machine disturbs wall times; each row gives its own).", "",
             "| # | benchmark | figure | goal | met | load before/after |", "|---|---|---|---|---|---|"]
    for i, p in enumerate(report["parts"], 1):
        fig, goal, met = summary(p)
        lines.append(f"| {PARTS.index(p['name']) + 1 if p['name'] in PARTS else i} | {p['name']} | "
                     f"{fig.replace('|', '/')} | {goal} | {met} | {p['load_before'][0]} / {p['load_after'][0]} |")
    lines.append("")
    for p in report["parts"]:
        if "what" in p:
            lines.append(f"- **{p['name']}**: {p['what']} ({fmt(p['part_wall_s'])} s)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=PARTS, help="run these parts only")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (also BENCH_QUICK=1)")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    args = ap.parse_args(argv)
    quick = args.quick or quick_mode()
    out_dir = Path(args.out) if args.out else RESULTS
    stem = "quick" if quick else "latest"
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": quick,
        "command": ("BENCH_QUICK=1 " if quick_mode() else "")
        + " ".join(["python -m bench.run_all", *(sys.argv[1:] if argv is None else argv)]).strip(),
        "machine": machine(), "load_before": load(), "load_after": None, "parts": []}

    def save(parts: list[dict]) -> str:  # after every part: an interrupted run keeps what it measured
        report.update(parts=parts, load_after=load())
        write_json(out_dir / f"{stem}.json", report)
        table = markdown(report)
        write_text(out_dir / f"{stem}.md", table)
        return table

    parts = run_parts(args.only or PARTS, quick, out_dir, on_part=save)
    print(save(parts))
    errors = [p["name"] for p in parts if "error" in p]
    if errors:
        print(f"parts that failed: {errors} (their errors are in {out_dir / (stem + '.json')})", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
