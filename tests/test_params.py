"""One checked conversion of config mappings into every step's parameter dataclass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tiltflow.errors import ConfigError
from tiltflow.params import params_from_dict


@dataclass(frozen=True)
class Example:
    flag: bool = False
    count: int = 1
    scale: float = 1.0
    name: str = "a"
    maybe: float | None = None
    size: tuple[int, int] = (1, 2)
    views: tuple[int, ...] = ()


def test_values_are_converted_to_the_annotated_types():
    e = params_from_dict(
        Example, {"count": 3.0, "scale": 2, "size": [5, 6], "views": [1, 3], "maybe": 4}, "ex"
    )
    assert e == Example(count=3, scale=2.0, size=(5, 6), views=(1, 3), maybe=4.0)
    assert isinstance(e.count, int) and isinstance(e.scale, float) and isinstance(e.maybe, float)
    assert params_from_dict(Example, {"maybe": None}, "ex").maybe is None
    assert params_from_dict(Example, None, "ex") == Example()


@pytest.mark.parametrize(
    "d, message",
    [
        ({"colour": 1}, r"unknown ex option\(s\) \['colour'\]"),
        ({"flag": "yes"}, r"ex\.flag: 'yes' \(expected true/false\)"),
        ({"count": 2.5}, r"ex\.count: 2\.5 \(expected an integer\)"),
        ({"count": True}, r"ex\.count"),
        ({"scale": "big"}, r"ex\.scale"),
        ({"name": 3}, r"ex\.name: 3 \(expected text\)"),
        ({"size": [1, 2, 3]}, r"ex\.size: .*expected a list of 2 values"),
        ({"views": "1-3"}, r"ex\.views: .*expected a list"),
    ],
)
def test_bad_values_name_the_key(d, message):
    with pytest.raises(ConfigError, match=message):
        params_from_dict(Example, d, "ex")


def test_a_mapping_is_required():
    with pytest.raises(ConfigError, match="ex parameters must be a mapping"):
        params_from_dict(Example, [1, 2], "ex")  # type: ignore[arg-type]
