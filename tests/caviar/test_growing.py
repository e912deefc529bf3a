"""NewItems: what was appended to a list that only grows."""

from caviar.growing import NewItems


def test_new_items_are_what_was_appended_since_the_last_take_and_another_list_starts_over() -> None:
    reader, items = NewItems(), []
    assert reader.take(items) == []
    items += [1, 2]
    assert reader.take(items) == [1, 2]
    items.append(3)
    assert reader.take(items) == [3] and reader.take(items) == []
    assert reader.take([1, 2, 3]) == [1, 2, 3]  # an equal list that is another object: read whole
