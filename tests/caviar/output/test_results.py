"""results/: atomic files, names that sort by score, refusing to mix or lose searches."""

import json
import os
import pickle
import subprocess
import sys

import pytest

from caviar.errors import CaviarError
from caviar.files import atomic_write
from caviar.output.results import ResultsDir, score_name
from caviar.store import DONE, RUNNING
from tests.conftest import ROOT


def doc(tid, loss=None, state=DONE, name=None):
    result = {"status": "fail", "error": "x"} if loss is None else {"status": "ok", "loss": loss}
    if name:
        result["model_name"] = name
    return {"tid": tid, "state": state, "result": result, "params": {"a": tid}, "exp_key": "e",
            "spec": None, "owner": None, "book_time": None, "refresh_time": None, "version": 0,
            "misc": {"tid": tid, "cmd": None, "workdir": None, "idxs": {"a": [tid]}, "vals": {"a": [tid]}}}


ACCURACY = {"metric": "accuracy", "maximize": True}


def test_names_sort_by_accuracy_with_failures_first():
    docs = [doc(0, -0.5), doc(1, -0.675), doc(2), doc(3, -0.05), doc(4, -0.6761, name="model_x")]
    ordered = sorted(docs, key=lambda d: score_name(d, ACCURACY))
    assert [d["tid"] for d in ordered] == [2, 3, 0, 1, 4]
    assert score_name(docs[4], ACCURACY) == "000000.676100_tid00004_model_x"


def test_names_of_a_loss_are_readable_and_sort_by_the_loss():
    docs = [doc(0, 12.5), doc(1, 3.0), doc(2, 1e7), doc(3, 0.0262), doc(4), doc(5, -40.0)]
    names = {d["tid"]: score_name(d) for d in docs}
    assert names[3] == "000000.026200_tid00003_trial" and names[0] == "000012.500000_tid00000_trial"
    assert [d["tid"] for d in sorted(docs, key=score_name)] == [4, 5, 3, 1, 0, 2]
    assert names[5].startswith("-00040.000000") and names[2].startswith("~1.000000e+07")


def test_update_writes_json_pickle_and_best(tmp_path):
    results = ResultsDir(str(tmp_path))
    best = results.update([doc(0, -0.3), doc(1, -0.4), doc(2, state=RUNNING)])
    assert best["tid"] == 1
    names = sorted(os.listdir(tmp_path))
    assert names == ["-00000.300000_tid00000_trial.json", "-00000.400000_tid00001_trial.json", "best.json",
                     "results.pkl"]
    with open(tmp_path / "results.pkl", "rb") as f:
        trials = pickle.load(f)
    assert len(trials.trials) == 2 and trials.best_trial["tid"] == 1
    assert json.loads((tmp_path / "best.json").read_text())["params"] == {"a": 1}
    assert results.update([doc(0, -0.3), doc(1, -0.4)]) is None  # nothing new


def pickled_tids(path):
    with open(path / "results.pkl", "rb") as f:
        return [t["tid"] for t in pickle.load(f).trials]


def test_a_mirror_of_mongodb_rewrites_the_pickle_at_most_so_often_and_when_flushed(tmp_path):
    mirror = ResultsDir(str(tmp_path), pickle_seconds=3600)
    mirror.update([doc(0, -0.3)])
    assert pickled_tids(tmp_path) == [0]  # the first write is due at once
    assert mirror.update([doc(0, -0.3), doc(1, -0.5)])["tid"] == 1  # best.json and the JSON at once...
    assert pickled_tids(tmp_path) == [0] and any("_tid00001_" in n for n in os.listdir(tmp_path))
    mirror.flush()  # ...results.pkl at the end
    assert pickled_tids(tmp_path) == [0, 1]
    (tmp_path / "embedded").mkdir()
    embedded = ResultsDir(str(tmp_path / "embedded"))
    for tid in range(3):
        embedded.update([doc(tid, -0.1)])
        assert pickled_tids(tmp_path / "embedded") == list(range(tid + 1))  # after every trial


def test_resume_reads_back_the_pickle(tmp_path):
    ResultsDir(str(tmp_path)).update([doc(0, -0.3), doc(1)])
    again = ResultsDir(str(tmp_path))
    assert [d["tid"] for d in again.load_docs()] == [0, 1]


@pytest.mark.parametrize("content", [b"", b"not a pickle", pickle.dumps({"a": 1})])
def test_an_unreadable_pickle_is_an_error_and_left_untouched(tmp_path, content):
    (tmp_path / "results.pkl").write_bytes(content)
    with pytest.raises(CaviarError, match="left untouched"):
        ResultsDir(str(tmp_path)).load_docs()
    assert (tmp_path / "results.pkl").read_bytes() == content


def test_a_folder_of_another_search_is_refused(tmp_path):
    ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f"})
    with pytest.raises(CaviarError, match="holds another search"):
        ResultsDir(str(tmp_path)).prepare({"space": "b:S", "objective": "a:f"})
    ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f"})


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(str(path), b"old")

    with pytest.raises(TypeError):
        atomic_write(str(path), object())  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    path = tmp_path / "f.json"
    atomic_write(str(path), b"{}")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_embedded_folder_is_not_taken_over_by_a_database_experiment(tmp_path):
    ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f", "exp_key": None})
    with pytest.raises(CaviarError, match="exp_key None there, 'e1' now"):
        ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f", "exp_key": "e1"})


def test_model_names_are_made_safe_for_file_names(tmp_path):
    name = score_name(doc(3, -0.5, name="resnet/v2 " + "x" * 200))
    assert "/" not in name and " " not in name and len(name) < 110
    ResultsDir(str(tmp_path), ACCURACY).update([doc(3, -0.5, name="resnet/v2")])
    assert "000000.500000_tid00003_resnet_v2.json" in os.listdir(tmp_path)


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_reading_a_folder_changes_nothing_and_repair_restores_it(tmp_path):
    ResultsDir(str(tmp_path), ACCURACY).update([doc(0, -0.3), doc(1, -0.5), doc(2)])
    (tmp_path / "000000.500000_tid00001_trial.json").unlink()  # killed between results.pkl and this JSON
    (tmp_path / "000000.900000_tid00007_trial.json").write_text("{}")  # a trial results.pkl does not hold
    (tmp_path / ".tmp-abcresults.pkl").write_bytes(b"half")  # a killed atomic write
    before = snapshot(tmp_path)
    reader = ResultsDir(str(tmp_path), ACCURACY)
    docs = reader.load_docs()
    assert [d["tid"] for d in docs] == [0, 1, 2] and snapshot(tmp_path) == before

    reader.repair(docs)
    assert sorted(p for p in os.listdir(tmp_path) if "_tid" in p) == [
        "!failed_tid00002.json", "000000.300000_tid00000_trial.json", "000000.500000_tid00001_trial.json"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    assert json.loads((tmp_path / "000000.500000_tid00001_trial.json").read_text())["params"] == {"a": 1}


def test_results_pkl_is_rebuilt_from_the_trial_jsons_only_when_asked(tmp_path):
    results = ResultsDir(str(tmp_path), ACCURACY)
    results.update([doc(0, -0.3), doc(1, -0.5), doc(2)])
    with open(tmp_path / "results.pkl", "rb") as f:
        original = pickle.load(f)
    (tmp_path / "results.pkl").write_bytes(b"damaged")
    with pytest.raises(CaviarError, match="pass --replace"):
        results.rebuild_pickle()
    assert (tmp_path / "results.pkl").read_bytes() == b"damaged"
    assert results.rebuild_pickle(replace=True) == 3
    assert (tmp_path / "results.pkl.damaged").read_bytes() == b"damaged"
    rebuilt = ResultsDir(str(tmp_path)).load_docs()
    assert [(d["tid"], d["result"], d["misc"]["vals"], d["params"]) for d in rebuilt] == [
        (d["tid"], d["result"], d["misc"]["vals"], d["params"]) for d in original.trials]
    with pytest.raises(CaviarError, match="results.pkl.damaged exists too"):
        results.rebuild_pickle(replace=True)


def test_settings_that_change_a_score_are_part_of_the_identity(tmp_path):
    identity = {"space": "a:S", "objective": "a:f", "exp_key": None, "env": {"HKS_DATASET": "cifar100", "HKS_SEED": "0"}}
    ResultsDir(str(tmp_path)).prepare(identity)
    other = identity | {"env": {"HKS_DATASET": "cifar10", "HKS_SEED": "0"}}
    with pytest.raises(CaviarError) as err:
        ResultsDir(str(tmp_path)).prepare(other)
    assert str(err.value) == (f"{tmp_path}/ holds another search (HKS_DATASET 'cifar100' there, 'cifar10' now); "
                              "start a new folder with --results-dir NEW")


def test_a_results_pkl_without_experiment_json_is_adopted_only_when_asked(tmp_path):
    ResultsDir(str(tmp_path)).update([doc(0, -0.3)])
    with pytest.raises(CaviarError, match="has no experiment.json.*pass --adopt"):
        ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f"})
    assert not (tmp_path / "experiment.json").exists()
    ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f"}, adopt=True)
    assert (tmp_path / "experiment.json").exists()


def test_one_search_holds_a_folder_and_a_dead_one_never_does(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CaviarError, match="another search is running in"):
            ResultsDir(str(tmp_path)).lock()
    finally:
        holder.kill()
        holder.wait()
    ResultsDir(str(tmp_path)).lock()  # SIGKILL released it


HOLD = """
import sys, time
from caviar.output.results import ResultsDir
ResultsDir(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(600)
"""
