"""The one KEY=VALUE parser of `dece filter --arg` and `dece purify --arg`: golden cases."""

from __future__ import annotations

import pytest

from dece.cli._args import parse_key_values


def test_values_are_yaml_and_keys_stripped() -> None:
    items = ["top_k=5", " level =statements", "tokens=[bb, cf]", "threshold=", "x=a=b"]
    assert parse_key_values(items) == {
        "top_k": 5, "level": "statements", "tokens": ["bb", "cf"], "threshold": None, "x": "a=b"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("oops", "--arg: expected KEY=VALUE, got 'oops'"),
        ("=3", "--arg: expected KEY=VALUE, got '=3'"),
        ("tokens=[bb", "--arg 'tokens=[bb': value is not valid YAML"),
    ],
)
def test_bad_items_name_the_option_and_the_item(item: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_key_values([item])
    assert str(exc.value).startswith(message)
