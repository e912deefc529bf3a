"""Plots of a real finished experiment: every file drawn, not blank, and importance finds the driver."""

import math
import os

import pytest
from hyperopt import hp
from matplotlib.image import imread

from caviar.store.local import LocalStore
from caviar.output.plots import make_plots, parameter_importance
from optimizer.search import Search
from neural_net.space import CIFAR_SPACE
from caviar.store import DONE

# Numeric (log-uniform and uniform), categorical, and conditional parameters:
# a dict branch with nested numbers and a choice between None and a number.
SPACE = {
    "lr": hp.loguniform("lr", math.log(1e-4), math.log(1e-1)),
    "dropout": hp.uniform("dropout", 0.0, 0.5),
    "optimizer": hp.choice("optimizer", ["adam", "sgd", "rmsprop"]),
    "block": hp.choice("block", [
        {"kind": "plain"},
        {"kind": "residual", "units": hp.quniform("units", 1, 4, 1), "width": hp.uniform("width", 0.5, 2.0)},
    ]),
    "extra_fc": hp.choice("extra_fc", [None, hp.uniform("fc_mult", 0.5, 1.5)]),
}
FAILED = {4, 17}
ACCURACY = {"metric": "validation accuracy", "maximize": True}
ALL_PLOTS = {"best_so_far.png", "scatter_matrix.png", "score_vs_params_1.png", "learning_curves.png", "importance.png"}


def small_space_accuracy(params):
    """The learning rate drives the score; dropout barely matters; the rest not at all."""
    return 0.8 - 0.15 * (math.log10(params["lr"]) + 2.5) ** 2 + 0.01 * params["dropout"]


def cifar_accuracy(params):
    """Residual units drive the score (None counts as none), the learning rate a little."""
    return 0.45 + 0.05 * (params["residual"] or 0) - 0.1 * abs(math.log(params["lr_rate_mult"]))


def run_experiment(space, accuracy, n=30, failed=lambda tid, params: tid in FAILED, history=True, algo="tpe"):
    """A real search over ``space``, each trial finished as a worker would, ``failed`` ones as failures."""
    store = LocalStore()
    search = Search(store, space, algo, max_evals=n, seed=0)
    while search.top_up(5):
        while (doc := store.claim("w")) is not None:
            tid = doc["tid"]
            if failed(tid, doc["params"]):
                assert store.finish(tid, "w", {"status": "fail", "error": "out of memory"})
                continue
            acc = accuracy(doc["params"])
            result = {"status": "ok", "loss": -acc, "model_name": f"model_{tid}"}
            if history:
                result["history"] = {
                    "val_fine_outputs_accuracy": [acc * (1 - 0.5 ** e) for e in range(1, 7)],
                    "fine_outputs_accuracy": [acc * (1.1 - 0.6 ** e) for e in range(1, 7)],
                    "loss": [3.0 / e for e in range(1, 7)],
                }
            assert store.finish(tid, "w", result)
    docs = store.trial_docs()
    assert len(docs) == n and all(d["state"] == DONE for d in docs)
    return docs


@pytest.fixture(scope="module")
def small_docs():
    return run_experiment(SPACE, small_space_accuracy)


def assert_real_image(path):
    """A valid PNG of a readable size that is not blank."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000
    pixels = imread(path)[..., :3]
    height, width = pixels.shape[:2]
    assert width >= 700 and height >= 400
    assert pixels.std() > 0.05
    # Plenty of ink, not a near-empty frame: more than 2% of pixels are not white.
    assert (pixels.min(axis=2) < 0.9).mean() > 0.02


def test_every_plot_of_a_finished_experiment_is_drawn(small_docs, tmp_path):
    paths = make_plots(small_docs, str(tmp_path), ACCURACY)
    assert {os.path.basename(p) for p in paths} == ALL_PLOTS
    assert sorted(os.listdir(tmp_path)) == sorted(ALL_PLOTS)
    for path in paths:
        assert_real_image(path)


def test_importance_ranks_the_parameter_that_drives_the_score_first(small_docs):
    importance = parameter_importance(small_docs)
    # Conditional parameters are plotted by their dotted names, present or "absent".
    assert set(importance) == {"lr", "dropout", "optimizer", "block.kind", "block.units", "block.width", "extra_fc"}
    assert next(iter(importance)) == "lr"
    mean, spread = importance["lr"]
    assert mean > 0.5 and 0 < spread < mean / 2  # with its uncertainty over bootstrap resamples
    assert sum(m for m, _ in importance.values()) == pytest.approx(1.0)


def test_the_default_cifar_space_plots_all_its_parameters(tmp_path):
    docs = run_experiment(CIFAR_SPACE, cifar_accuracy, algo="random")
    paths = make_plots(docs, str(tmp_path), ACCURACY)
    names = {os.path.basename(p) for p in paths}
    # 19 parameters, 12 a page.
    assert names == ALL_PLOTS | {"score_vs_params_2.png"}
    for path in paths:
        assert_real_image(path)
    importance = parameter_importance(docs)
    assert set(importance) == set(CIFAR_SPACE)
    assert next(iter(importance)) == "residual"


def test_what_few_trials_cannot_support_is_skipped_and_stale_files_removed(tmp_path):
    # Plots of an earlier call, and a file that is not ours and must stay.
    for name in ALL_PLOTS | {"score_vs_params_2.png", "notes.png"}:
        (tmp_path / name).write_bytes(b"old")
    few = run_experiment(SPACE, small_space_accuracy, n=4, failed=lambda tid, params: tid == 1, history=False)
    paths = make_plots(few, str(tmp_path), ACCURACY)
    # 3 ok trials: no importance; no history: no learning curves; the earlier ones are gone.
    assert {os.path.basename(p) for p in paths} == {"best_so_far.png", "scatter_matrix.png", "score_vs_params_1.png"}
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(p) for p in paths] + ["notes.png"])
    assert parameter_importance(few) == {}
    for path in paths:
        assert_real_image(path)


def test_no_finished_trial_draws_nothing(tmp_path):
    store = LocalStore()
    Search(store, SPACE, "random", max_evals=5).top_up(5)
    assert make_plots(store.trial_docs(), str(tmp_path)) == []
    assert make_plots([], str(tmp_path / "new")) == []
    assert os.listdir(tmp_path / "new") == []


def test_documents_without_params_fall_back_to_hyperopt_labels(small_docs):
    docs = [{k: v for k, v in d.items() if k != "params"} for d in small_docs]
    importance = parameter_importance(docs)
    assert set(importance) == {"lr", "dropout", "optimizer", "block", "units", "width", "extra_fc", "fc_mult"}
    assert next(iter(importance)) == "lr"


def test_a_branch_that_only_failed_trials_took_still_plots(tmp_path):
    docs = run_experiment(SPACE, small_space_accuracy, n=40, history=False, algo="random",
                          failed=lambda tid, params: params["block"]["kind"] == "residual")
    paths = make_plots(docs, str(tmp_path), ACCURACY)
    assert {os.path.basename(p) for p in paths} == ALL_PLOTS - {"learning_curves.png"}
    for path in paths:
        assert_real_image(path)


def test_all_failed_trials_still_show_the_progress(tmp_path):
    docs = run_experiment(SPACE, small_space_accuracy, n=6, failed=lambda tid, params: True)
    paths = make_plots(docs, str(tmp_path), ACCURACY)
    assert [os.path.basename(p) for p in paths] == ["best_so_far.png"]
    assert_real_image(paths[0])


def test_importance_needs_enough_trials(small_docs):
    assert parameter_importance(small_docs[:8]) == {}  # 8 ok trials rank nothing reliably


def test_importance_never_ranks_a_parameter_the_search_marked_inactive(small_docs):
    # A family that fills a default for an inactive parameter: params has it, misc.vals says inactive.
    docs = [d | {"params": d["params"] | {"noise": d["tid"] % 3},
                 "misc": d["misc"] | {"vals": d["misc"]["vals"] | {"noise": []}}} for d in small_docs]
    importance = parameter_importance(docs)
    assert "noise" not in importance and "lr" in importance


def test_trials_stopped_early_are_drawn_as_such(small_docs, tmp_path):
    from caviar.output.plots import _trials

    docs = [d | {"result": d["result"] | {"stopped": True, "stopped_at": 1}} if d["tid"] in (3, 4) else d
            for d in small_docs]
    assert [t.tid for t in _trials(docs) if t.stopped] == [3, 4]
    [path] = [p for p in make_plots(docs, str(tmp_path)) if p.endswith("best_so_far.png")]
    assert_real_image(path)
