"""results/: atomic files, names that sort by score, refusing to mix or lose searches."""

import json
import os
import pickle

import pytest

from caviar.errors import CaviarError
from caviar.files import atomic_write
from caviar.output.results import ResultsDir, score_name
from caviar.store import DONE, RUNNING


def doc(tid, loss=None, state=DONE, name=None):
    result = {"status": "fail", "error": "x"} if loss is None else {"status": "ok", "loss": loss}
    if name:
        result["model_name"] = name
    return {"tid": tid, "state": state, "result": result, "params": {"a": tid}, "exp_key": "e",
            "spec": None, "owner": None, "book_time": None, "refresh_time": None, "version": 0,
            "misc": {"tid": tid, "cmd": None, "workdir": None, "idxs": {"a": [tid]}, "vals": {"a": [tid]}}}


def test_names_sort_by_accuracy_with_failures_first():
    docs = [doc(0, -0.5), doc(1, -0.675), doc(2), doc(3, -0.05), doc(4, -0.6761, name="model_x")]
    ordered = sorted(docs, key=score_name)
    assert [d["tid"] for d in ordered] == [2, 3, 0, 1, 4]
    assert score_name(docs[4]) == "0.676100_tid00004_model_x"


def test_names_sort_by_score_for_any_loss():
    docs = [doc(0, 12.5), doc(1, 3.0), doc(2, -40.0), doc(3, 0.5)]
    assert [d["tid"] for d in sorted(docs, key=score_name)] == [0, 1, 3, 2]


def test_update_writes_json_pickle_and_best(tmp_path):
    results = ResultsDir(str(tmp_path))
    best = results.update([doc(0, -0.3), doc(1, -0.4), doc(2, state=RUNNING)])
    assert best["tid"] == 1
    names = sorted(os.listdir(tmp_path))
    assert names == ["0.300000_tid00000_trial.json", "0.400000_tid00001_trial.json", "best.json", "results.pkl"]
    with open(tmp_path / "results.pkl", "rb") as f:
        trials = pickle.load(f)
    assert len(trials.trials) == 2 and trials.best_trial["tid"] == 1
    assert json.loads((tmp_path / "best.json").read_text())["params"] == {"a": 1}
    assert results.update([doc(0, -0.3), doc(1, -0.4)]) is None  # nothing new


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
    with pytest.raises(CaviarError, match="exp_key: None there, 'e1' now"):
        ResultsDir(str(tmp_path)).prepare({"space": "a:S", "objective": "a:f", "exp_key": "e1"})


def test_model_names_are_made_safe_for_file_names(tmp_path):
    name = score_name(doc(3, -0.5, name="resnet/v2 " + "x" * 200))
    assert "/" not in name and " " not in name and len(name) < 110
    ResultsDir(str(tmp_path)).update([doc(3, -0.5, name="resnet/v2")])
    assert "0.500000_tid00003_resnet_v2.json" in os.listdir(tmp_path)


def test_a_trial_json_without_its_pickle_entry_is_removed_on_resume(tmp_path):
    ResultsDir(str(tmp_path)).update([doc(0, -0.3)])
    (tmp_path / "0.900000_tid00001_trial.json").write_text("{}")  # written, then the process died
    again = ResultsDir(str(tmp_path))
    assert [d["tid"] for d in again.load_docs()] == [0]
    assert sorted(p for p in os.listdir(tmp_path) if "_tid" in p) == ["0.300000_tid00000_trial.json"]
