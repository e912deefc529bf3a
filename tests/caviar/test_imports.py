"""Import paths: how objectives and spaces are named, and the errors users see."""

import pytest

from caviar.errors import CaviarError
from caviar.imports import import_attr, import_path_of
from caviar.objective import normalize


def test_import_attr_resolves_nested_names():
    assert import_attr("caviar.objective:normalize") is normalize
    assert import_attr("os.path:join").__name__ == "join"


@pytest.mark.parametrize(
    "path, message",
    [
        ("no_colon", "must look like"),
        ("no_such_module_xyz:f", "cannot import module"),
        ("caviar.objective:nope", "has no attribute"),
    ],
)
def test_import_attr_errors_are_one_clear_line(path, message):
    with pytest.raises(CaviarError, match=message) as info:
        import_attr(path)
    assert "\n" not in str(info.value)


def test_broken_user_module_is_reported(tmp_path, monkeypatch):
    (tmp_path / "broken_space_mod.py").write_text("raise RuntimeError('typo in my space')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CaviarError, match="failed to load: RuntimeError: typo in my space"):
        import_attr("broken_space_mod:SPACE", what="space")


def test_import_path_of_module_function():
    assert import_path_of(normalize) == "caviar.objective:normalize"


def test_lambdas_and_closures_are_refused():
    with pytest.raises(CaviarError, match="module-level function"):
        import_path_of(lambda p: 0.0)

    def inner(p):
        return 0.0

    with pytest.raises(CaviarError, match="module-level function"):
        import_path_of(inner)


def test_hyperopts_atpe_is_deferred_yet_usable():
    import subprocess
    import sys

    code = (
        "import sys, optimizer.search, optimizer.master\n"
        "assert 'scipy.stats' not in sys.modules, 'ATPE was loaded at start-up'\n"
        "from hyperopt import atpe\n"
        "print(callable(atpe.suggest), 'scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr
