"""The run unit: specs that hash, run_one that pickles, sweeps that resume, and the LR rule."""
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch

from ftkit.lab.lr_rule import RULE, choose_lrs
from ftkit.lab.race import make_strategies
from ftkit.lab.runs import build_model, run_one
from ftkit.lab.specs import DataSpec, LRGroups, ModelSpec, RunRecord, RunSpec, Strategy, holdout_split
from ftkit.lab.sweep import load_records, sweep
from ftkit.models.groups import layer_groups
from ftkit.models.zoo import load_backbone
from ftkit.training.spec import TrainSpec

DATA = DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2)
BUDGET = TrainSpec(optimizer="adam", lr=1e-3, epochs=1, batch_size=10)


def probe(lr=1e-2):
    return Strategy("linear_probe", ModelSpec(freeze="all_but_head"), BUDGET.replace(lr=lr))


def test_specs_hash_by_value_and_refuse_nonsense():
    a = RunSpec(probe(), DATA, seed=0)
    assert a.key == RunSpec(probe(), DataSpec("digits", n_per_class=3, image_size=32, val_n_per_class=2), 0).key
    assert a.key != RunSpec(probe(), DATA, seed=1).key != RunSpec(probe(3e-2), DATA, seed=0).key
    assert pickle.loads(pickle.dumps(a)).key == a.key
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainSpec(optimizer="adamm")
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        TrainSpec(epochs=0)
    with pytest.raises(ValueError, match="either freeze or train_groups"):
        ModelSpec(freeze=2, train_groups=(3,))
    with pytest.raises(ValueError, match="exactly one of"):
        LRGroups()


def test_run_one_is_a_pure_function_of_its_spec():
    spec = RunSpec(probe(), DATA, seed=0)
    a, b = run_one(spec), run_one(pickle.loads(pickle.dumps(spec)))
    def measured(r):  # everything but wall-clock times
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in r.curve], r.step_losses, r.final_acc

    assert measured(a) == measured(b)
    assert a.steps == 3 and a.body_drift == 0.0  # 30 images / batch 10; frozen body never moves
    assert RunRecord.from_dict(a.to_dict()).row()["strategy"] == "linear_probe"


def test_sweep_on_an_executor_matches_the_in_process_run_and_resumes(tmp_path, monkeypatch):
    specs = [RunSpec(probe(), DATA, seed=s) for s in (0, 1)]
    # threads=1 on both sides: a worker otherwise takes its share of the cores, and torch's thread
    # count changes float rounding.
    here = sweep(specs, progress=False, threads=1)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        there = sweep(specs, executor=ex, out=tmp_path, progress=False, threads=1)
    assert [(r.final_acc, r.step_losses) for r in here] == [(r.final_acc, r.step_losses) for r in there]
    assert set(load_records(tmp_path)) == {s.key for s in specs}
    # Resume: nothing runs again (a run would fail).
    monkeypatch.setattr("ftkit.lab.sweep.run_one", lambda spec: (_ for _ in ()).throw(AssertionError("ran again")))
    again = sweep(specs, out=tmp_path, resume=True, progress=False)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in there]
    with pytest.raises(ValueError, match="resume=True needs out"):
        sweep(specs, resume=True)
    with ThreadPoolExecutor(max_workers=2) as ex, pytest.raises(ValueError, match="random number generator"):
        sweep(specs, executor=ex)


def test_copy_first_k_groups_and_reinitialise_the_rest():
    pretrained = load_backbone("mobilenet_v2").model
    model = build_model(ModelSpec(copy_groups=2), 5, seed=0)
    groups = layer_groups(model)
    kept = [m for g in groups[:2] for m in g.modules]

    def in_kept(name):
        return any(name.startswith(m + ".") for m in kept)

    source = dict(pretrained.named_parameters())
    assert all(torch.equal(p, source[n]) for n, p in model.named_parameters() if in_kept(n))
    changed = [n for n, p in model.named_parameters()
               if n in source and p.shape == source[n].shape and not torch.equal(p, source[n])]
    assert changed and not any(in_kept(n) for n in changed)


def test_train_only_chosen_groups_and_lp_ft_phases():
    model = build_model(ModelSpec(train_groups=(0,)), 5, seed=0)
    groups = layer_groups(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(any(n.startswith(m + ".") for m in groups[0].modules) for n in trainable)
    lpft = Strategy("lp_ft", ModelSpec(), BUDGET, probe=BUDGET.replace(lr=1e-2))
    record = run_one(RunSpec(lpft, DATA, seed=0))
    assert record.steps == 6 and [r["step"] for r in record.curve] == [0, 3, 6]
    assert record.body_drift > 0


def test_discriminative_groups_give_lower_groups_smaller_lrs():
    s = Strategy("disc", ModelSpec(), BUDGET, groups=LRGroups(head_mult=10.0))
    record = run_one(RunSpec(s, DATA, seed=0))
    assert record.steps == 3 and record.stopped_reason is None


def test_holdout_split_is_stratified_and_disjoint():
    from ftkit.data import load_dataset

    train = load_dataset("digits", "train", n_per_class=8, image_size=16)
    rest, held = holdout_split(train, 0.25, seed=0)
    assert set(rest.indices).isdisjoint(held.indices) and len(rest) + len(held) == len(train)
    assert sorted(set(held.targets.tolist())) == list(range(10)) and len(held) == 20
    with pytest.raises(ValueError, match="too few to hold out"):
        holdout_split(load_dataset("digits", "train", n_per_class=1, image_size=16), 0.25)


def test_choose_lrs_uses_one_rule_and_never_the_test_split(monkeypatch):
    import ftkit.data.catalogue as catalogue

    real = catalogue.load_dataset

    def train_only(name, split="train", *a, **k):
        assert split == "train", "the LR rule must not read the test split"
        return real(name, split, *a, **k)

    monkeypatch.setattr(catalogue, "load_dataset", train_only)
    strategies = make_strategies(["linear_probe"], epochs=1, batch_size=10)
    data = DataSpec("digits", n_per_class=4, image_size=32)
    choice = choose_lrs(strategies, data, grid=(1e-4, 1e-1), seeds=(0,))
    assert choice.rule == RULE and set(choice.lrs) == {"linear_probe"}
    assert choice.lrs["linear_probe"] in (1e-4, 1e-1) and choice.summary["chosen"].sum() == 1
    best = choice.summary.loc[choice.summary["chosen"], "holdout_acc_mean"].item()
    assert best == choice.summary["holdout_acc_mean"].max()
    assert choice.apply(strategies)[0].lr == choice.lrs["linear_probe"]
