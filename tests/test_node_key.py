"""The deterministic order of node ids: natural, total, and defined for any text."""

from hypothesis import given
from hypothesis import strategies as st

from innet.core.topology.model import node_key


def test_digit_runs_compare_as_numbers():
    assert sorted(["n10", "n2", "f", "n1_10", "n1_9"], key=node_key) == [
        "f", "n1_9", "n1_10", "n2", "n10",
    ]  # fmt: skip


@given(st.lists(st.text(), max_size=8))
def test_any_ids_sort_and_distinct_ids_get_distinct_keys(ids):
    keys = [node_key(node) for node in ids]
    assert len(set(keys)) == len(set(ids))
    ordered = sorted(ids, key=node_key)
    assert sorted(reversed(ordered), key=node_key) == ordered
