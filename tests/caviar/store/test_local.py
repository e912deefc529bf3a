"""The in-process store's own checkpoint folder (a store without a results folder): it leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

from caviar.store.local import LocalStore
from tests.helpers.trials import enqueue_points


def test_a_store_without_a_results_folder_removes_its_checkpoint_folder_once_empty(tmp_path: Path) -> None:
    store = LocalStore("exp")
    first, second = enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])
    assert {store.claim("w")["tid"], store.claim("w")["tid"]} == {first, second}
    state = tmp_path / "state"
    state.write_text("weights")
    assert store.put_checkpoint(first, "w", str(state), 1) and store.put_checkpoint(second, "w", str(state), 2)
    folder = os.path.dirname(store._checkpoint_paths(first)[0])
    store.discard_checkpoint(first)
    assert os.listdir(folder) and store.get_checkpoint(second, str(tmp_path / "back")) == (2, {})  # the other's kept
    store.discard_checkpoint(second)
    assert not os.path.exists(folder)
    assert store.put_checkpoint(second, "w", str(state), 3)  # a later checkpoint gets a new folder
    assert store.get_checkpoint(second, str(tmp_path / "again")) == (3, {})
    again = os.path.dirname(store._checkpoint_paths(second)[0])
    store.discard_checkpoint(second)
    assert not os.path.exists(again)
