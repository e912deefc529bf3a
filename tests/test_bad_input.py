"""The README's promise, held over a table of bad inputs: one `error:` line, a non-zero exit, results untouched.

Every case runs ``python -m optimizer`` (or one of its tools) as a user would, in a copy of a folder that
already holds a finished search; the whole folder is compared byte for byte before and after. Most
cases fail before any trial runs.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.neural_net.conftest import write_cifar100
from tests.optimizer.test_cli import USER_MODULE

REPO = Path(__file__).resolve().parents[1]
USER = ["--space", "usermod:SPACE", "--objective", "usermod:objective"]
CNN = ["--objective", "neural_net:CNN", "--results-dir", "cnn"]
FILES = {
    "usermod.py": USER_MODULE,
    "broken_syntax.py": "SPACE = {\n",
    "raises_at_import.py": "raise RuntimeError('no GPU here')\n",
    "badspace.py": "from hyperopt import hp\nSPACE = {'x': hp.uniform('x', 0)}\n",
    "afile": "",
    "emptyfile": "",
    "garbage.tar.gz": "this is not a tar.gz archive",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HKS_") and k not in ("MONGO_URL", "DATASET_SIZE", "EXPERIMENT_NAME")}
    return env | {"PYTHONPATH": f".{os.pathsep}{REPO}", "HKS_OFFLINE": "1"} | extra


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder after a real 2-trial search, plus the broken things the cases point at."""
    root = tmp_path_factory.mktemp("template")
    for name, text in FILES.items():
        (root / name).write_text(text)
    done = subprocess.run([sys.executable, "-m", "optimizer", *USER, "--max-evals", "2"], cwd=root, env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = root / "results"
    (root / "nodata").mkdir()
    write_cifar100(root / "ml_req_ok", n_train=20, n_test=10)
    shutil.copytree(results, root / "other_search")
    experiment = json.loads((results / "experiment.json").read_text())
    (root / "other_search" / "experiment.json").write_text(json.dumps(experiment | {"space": "theirs:SPACE"}))
    (root / "foreign").mkdir()
    shutil.copy(results / "results.pkl", root / "foreign" / "results.pkl")
    shutil.copytree(results, root / "damaged")
    (root / "damaged" / "results.pkl").write_bytes(b"\x80\x04garbage")
    shutil.copytree(results, root / "bad_experiment")
    (root / "bad_experiment" / "experiment.json").write_text("{not json")
    return root


def with_pkl(content: bytes):
    def setup(folder: Path) -> None:
        (folder / "results" / "results.pkl").write_bytes(content)
    return setup


def truncated(folder: Path) -> None:
    pkl = folder / "results" / "results.pkl"
    pkl.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 2])


def garbage_archive_in_ml_req(folder: Path) -> None:
    (folder / "ml_req").mkdir()
    (folder / "ml_req" / "cifar-100-python.tar.gz").write_text("garbage")


# (id, arguments, environment, set-up of the folder, a fragment of the error line)
CASES = [
    # flags
    ("max-evals 0", [*USER, "--max-evals", "0"], {}, None, "--max-evals: invalid"),
    ("max-evals negative", [*USER, "--max-evals", "-3"], {}, None, "--max-evals"),
    ("max-evals fraction", [*USER, "--max-evals", "1.5"], {}, None, "'1.5'"),
    ("max-evals word", [*USER, "--max-evals", "many"], {}, None, "'many'"),
    ("max-evals absurd", [*USER, "--max-evals", "1000000000000"], {}, None, "from 1 to 1000000"),
    ("max-evals no value", [*USER, "--max-evals"], {}, None, "expected one argument"),
    ("abbreviated flag", [*USER, "--max-eval", "8"], {}, None, "unrecognized arguments: --max-eval"),
    ("unknown flag", [*USER, "--bogus"], {}, None, "unrecognized arguments: --bogus"),
    ("stray argument", [*USER, "extra"], {}, None, "unrecognized arguments: extra"),
    ("algo", [*USER, "--algo", "bayes"], {}, None, "invalid choice: 'bayes'"),
    ("algo-grid", [*USER, "--algo", "grid"], {}, None, "grid search cannot enumerate 'x': hp.uniform"),
    ("seed negative", [*USER, "--seed", "-1"], {}, None, "--seed"),
    ("seed word", [*USER, "--seed", "x"], {}, None, "--seed"),
    ("lease 0", [*USER, "--lease-seconds", "0"], {}, None, "--lease-seconds"),
    ("lease negative", [*USER, "--lease-seconds", "-1"], {}, None, "--lease-seconds"),
    ("lease inf", [*USER, "--lease-seconds", "inf"], {}, None, "positive finite number"),
    ("lease nan", [*USER, "--lease-seconds", "nan"], {}, None, "positive finite number"),
    ("lookahead negative", [*USER, "--lookahead", "-1"], {}, None, "--lookahead"),
    ("lookahead absurd", [*USER, "--lookahead", "1000000"], {}, None, "from 0 to 1000"),
    # environment values
    ("HKS_MAX_EVALS word", USER, {"HKS_MAX_EVALS": "many"}, None, "HKS_MAX_EVALS='many'"),
    ("HKS_MAX_EVALS 0", USER, {"HKS_MAX_EVALS": "0"}, None, "HKS_MAX_EVALS='0'"),
    ("HKS_MAX_EVALS huge float", USER, {"HKS_MAX_EVALS": "1e400"}, None, "HKS_MAX_EVALS='1e400'"),
    ("HKS_ALGO", USER, {"HKS_ALGO": "bayes"}, None, "HKS_ALGO='bayes' is not one of"),
    ("HKS_SEED", USER, {"HKS_SEED": "-5"}, None, "HKS_SEED='-5'"),
    ("HKS_LEASE_SECONDS inf", USER, {"HKS_LEASE_SECONDS": "inf"}, None, "HKS_LEASE_SECONDS='inf'"),
    ("HKS_LOOKAHEAD word", USER, {"HKS_LOOKAHEAD": "x"}, None, "HKS_LOOKAHEAD='x'"),
    ("HKS_DATASET", CNN, {"HKS_DATASET": "svhn"}, None, "HKS_DATASET='svhn' is not one of"),
    ("HKS_EPOCHS 0", CNN, {"HKS_EPOCHS": "0"}, None, "HKS_EPOCHS='0'"),
    ("HKS_EPOCHS float", CNN, {"HKS_EPOCHS": "1e9"}, None, "HKS_EPOCHS='1e9'"),
    ("HKS_VALIDATION_SPLIT", CNN, {"HKS_VALIDATION_SPLIT": "1.5"}, None, "HKS_VALIDATION_SPLIT='1.5'"),
    ("DATASET_SIZE", CNN, {"DATASET_SIZE": "-3"}, None, "DATASET_SIZE='-3'"),
    # spaces
    ("space module missing", ["--space", "nomodule_here:SPACE", "--objective", "usermod:objective"], {}, None,
     "cannot import module 'nomodule_here'"),
    ("space attribute missing", ["--space", "usermod:nothing", "--objective", "usermod:objective"], {}, None,
     "has no attribute 'nothing'"),
    ("space is a function", ["--space", "usermod:objective", "--objective", "usermod:objective"], {}, None,
     "not a valid hyperopt space"),
    ("space without colon", ["--space", "justtext", "--objective", "usermod:objective"], {}, None, "justtext"),
    ("space empty attribute", ["--space", "usermod:", "--objective", "usermod:objective"], {}, None, "usermod:"),
    ("space syntax error", ["--space", "broken_syntax:SPACE", "--objective", "usermod:objective"], {}, None,
     "broken_syntax"),
    ("space raises on import", ["--space", "raises_at_import:SPACE", "--objective", "usermod:objective"], {}, None,
     "no GPU here"),
    ("space cannot be sampled", ["--space", "badspace:SPACE", "--objective", "usermod:objective"], {}, None,
     "holds another search"),
    # objectives
    ("objective module missing", ["--space", "usermod:SPACE", "--objective", "nomodule:fn"], {}, None,
     "cannot import module 'nomodule'"),
    ("objective attribute missing", ["--space", "usermod:SPACE", "--objective", "usermod:nothing"], {}, None,
     "has no attribute 'nothing'"),
    ("objective not callable", ["--space", "usermod:SPACE", "--objective", "usermod:SPACE"], {}, None,
     "is not callable"),
    ("objective without colon", ["--space", "usermod:SPACE", "--objective", "nocolon"], {}, None, "nocolon"),
    ("objective syntax error", ["--space", "usermod:SPACE", "--objective", "broken_syntax:fn"], {}, None,
     "broken_syntax"),
    ("objective raises on import", ["--space", "usermod:SPACE", "--objective", "raises_at_import:fn"], {}, None,
     "no GPU here"),
    ("objective without a space", ["--objective", "usermod:objective"], {}, None, "has no default space"),
    # database URLs
    ("mongo not a URL", [*USER, "--mongo", "not a url"], {}, None, "error: "),
    ("mongo http URL", [*USER, "--mongo", "http://example.com/x"], {}, None, "error: "),
    ("mongo empty host", [*USER, "--mongo", "mongodb://"], {}, None, "error: "),
    ("mongo unreachable", [*USER, "--mongo", "mongodb://127.0.0.1:1/caviar", "--results-dir", "fresh"], {}, None,
     "cannot use MongoDB at mongodb://127.0.0.1:1/caviar"),
    ("MONGO_URL garbage", USER, {"MONGO_URL": "garbage"}, None, "error: "),
    # results folders
    ("results-dir is a file", [*USER, "--results-dir", "afile"], {}, None, "afile"),
    ("results-dir under a file", [*USER, "--results-dir", "afile/sub"], {}, None, "afile/sub"),
    ("results-dir of another search", [*USER, "--results-dir", "other_search"], {}, None,
     "space 'theirs:SPACE' there, 'usermod:SPACE' now"),
    ("results.pkl without experiment.json", [*USER, "--results-dir", "foreign"], {}, None, "--adopt"),
    ("damaged results.pkl", [*USER, "--results-dir", "damaged"], {}, None, "python -m optimizer rebuild"),
    ("unreadable experiment.json", [*USER, "--results-dir", "bad_experiment"], {}, None, "experiment.json"),
    # results.pkl contents
    ("results.pkl empty", USER, {}, with_pkl(b""), "left untouched"),
    ("results.pkl truncated", USER, {}, truncated, "left untouched"),
    ("results.pkl holds a dict", USER, {}, with_pkl(pickle.dumps({"trials": []})), "not hold a hyperopt Trials"),
    ("results.pkl holds a list", USER, {}, with_pkl(pickle.dumps([1, 2])), "not hold a hyperopt Trials"),
    # data paths (the CNN checks its data set before anything is written)
    ("data path missing", [*CNN, "--data-path", "/nonexistent/cifar-100-python.tar.gz"], {}, None, "/nonexistent"),
    ("data path empty file", [*CNN, "--data-path", "emptyfile"], {}, None, "emptyfile"),
    ("data path folder without archive", [*CNN, "--data-path", "nodata"], {}, None, "nodata"),
    ("data path garbage archive", [*CNN, "--data-path", "garbage.tar.gz"], {}, None, "garbage.tar.gz"),
    ("garbage archive in ml_req", CNN, {}, garbage_archive_in_ml_req, "cifar-100-python.tar.gz"),
    ("no data set offline", CNN, {}, None, "ml_req/"),
    ("validation split leaves nothing", [*CNN, "--data-path", "ml_req_ok", "--dataset-size", "2",
                                         "--validation-split", "0.9"], {}, None, "leaves no training images"),
    # the tools
    ("status of no search", ["status", "--results-dir", "nowhere"], {}, None, "no search in nowhere/"),
    ("best of a file", ["best", "--results-dir", "afile"], {}, None, "afile"),
    ("export without a model", ["export", "--out", "m.keras"], {}, None, "kept no model"),
    ("rebuild over results.pkl", ["rebuild", "--results-dir", "results"], {}, None, "pass --replace"),
    ("rebuild of no folder", ["rebuild", "--results-dir", "nowhere"], {}, None, "no results folder nowhere/"),
    ("status watch 0", ["status", "--watch", "0"], {}, None, "--watch"),
    ("plot under a file", ["plot", "--out", "afile/x"], {}, None, "afile/x"),
    ("status bad URL", ["status", "--mongo", "not a url"], {}, None, "error: "),
    ("tool unknown flag", ["best", "--json", "--bogus"], {}, None, "unrecognized arguments: --bogus"),
]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None), except Python's bytecode caches."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*")) if "__pycache__" not in p.parts}


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 50 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("args, env, setup, fragment", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_and_changes_nothing(template: Path, tmp_path: Path, args: list[str],
                                                         env: dict[str, str], setup, fragment: str) -> None:
    folder = tmp_path / "project"
    shutil.copytree(template, folder, ignore=shutil.ignore_patterns("__pycache__"))
    if setup is not None:
        setup(folder)
    before = snapshot(folder)
    done = subprocess.run([sys.executable, "-m", "optimizer", *args], cwd=folder, env=clean_env(**env),
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], done.stderr
    assert fragment in lines[-1], lines[-1]
    assert snapshot(folder) == before
