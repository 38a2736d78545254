"""The request options in Python dicts follow the engine's option table both ways: every option
of the table is taken under its name and comes back unchanged, a value of the wrong type and an
unknown key are errors naming the key."""

import pytest

import chimeraforge as cf


def good_value(option):
    if option["type"] == "strings":
        return ["END"]
    if option["type"] == "number":
        return option["hi"] / 2
    return max(option["lo"], min(option["hi"], 100))


def round_trip(options):
    return cf._native.workflow_config({"name": "t", "options": options})["options"]


def test_the_table_lists_every_option_once():
    names = [o["name"] for o in cf._native.option_table()]
    assert len(names) == len(set(names))
    assert {"num_ctx", "num_predict", "temperature", "seed", "stop"} <= set(names)
    assert all(o["doc"] for o in cf._native.option_table())


@pytest.mark.parametrize("option", cf._native.option_table(), ids=lambda o: o["name"])
def test_every_option_goes_in_and_comes_back(option):
    name = option["name"]
    value = good_value(option)
    assert round_trip({name: value}) == {name: value}
    assert round_trip({}) == {}

    wrong = 5 if option["type"] == "strings" else "five"
    with pytest.raises(cf.BadInputError, match=f"'{name}'"):
        round_trip({name: wrong})
    with pytest.raises(cf.BadInputError, match=f"unknown key '{name}_x'"):
        round_trip({name: value, f"{name}_x": 1})
