"""The checkpoint-cost benchmark times real puts into both stores (a fresh nx-27017 and a results folder)."""

from __future__ import annotations

import re

import pytest

from bench import checkpoint_cost


def test_it_tables_the_seconds_per_put_of_each_size_in_both_stores(tmp_path) -> None:
    output = tmp_path / "cost.md"
    assert checkpoint_cost.main(["--sizes", "1", "2", "--repeat", "2", "--output", str(output)]) == 0
    rows = re.findall(r"^\| (\d+) MiB \| (\S+) \| (\d+) \| (\S+) \| (\d+) \|$", output.read_text(), re.M)
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(float(row[1]) > 0 and float(row[3]) > 0 for row in rows)


@pytest.mark.parametrize("flags", [["--sizes", "0"], ["--repeat", "0"]])
def test_a_size_or_repeat_below_one_is_refused(tmp_path, flags: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        checkpoint_cost.main([*flags, "--output", str(tmp_path / "cost.md")])
    assert exit_.value.code == 2 and "error: --sizes and --repeat must be positive" in capsys.readouterr().err
    assert not (tmp_path / "cost.md").exists()
