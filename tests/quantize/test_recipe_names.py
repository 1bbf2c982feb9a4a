"""recipe_names(): the concrete names spelled out by every registered family's example."""

from retarget.quantize.configs import _expand, config_from_name, recipe_names


def test_expand_braces_options_and_alternatives() -> None:
    assert _expand("a{b,c}[-d], e") == ["ab", "ab-d", "ac", "ac-d", "e"]


def test_every_listed_name_parses_to_a_config_of_that_name() -> None:
    names = recipe_names()
    assert {"fp32", "keep", "int4-g128-asym", "int8-channel-sym"} <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        assert config_from_name(name).name == name
