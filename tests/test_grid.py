import math

import pytest

from service.core.errors import Invalid
from service.sweeps.grid import DEFAULT_GRID, config_key, expand_grid, validate_grid


def test_default_grid_has_27_points_in_stable_order():
    points = expand_grid(validate_grid(None, 500))
    assert len(points) == 27
    assert points[0] == {"i": 0.001, "j": 1, "k": 1000}
    assert points[-1] == {"i": 0.1, "j": 4, "k": 4000}


def test_partial_grid_fills_in_defaults_and_drops_duplicates():
    grid = validate_grid({"i": [0.5, 0.5, 0.25], "k": [10.0]}, 500)
    assert grid == {"i": [0.25, 0.5], "j": [1, 2, 4], "k": [10]}
    assert len(expand_grid(grid)) == 6


@pytest.mark.parametrize(
    ("grid", "field"),
    [
        ({"i": [0]}, "grid.i"),
        ({"i": [-0.1]}, "grid.i"),
        ({"i": [math.inf]}, "grid.i"),
        ({"i": ["0.1"]}, "grid.i"),
        ({"i": [True]}, "grid.i"),
        ({"j": [1.5]}, "grid.j"),
        ({"j": [0]}, "grid.j"),
        ({"k": [-3]}, "grid.k"),
        ({"k": []}, "grid.k"),
        ({"k": 5}, "grid.k"),
        ({"1x": [1]}, "grid"),
        ({"images": [1]}, "grid"),
        ({"lr": ["--images"]}, "grid.lr"),
        ({"lr": [None]}, "grid.lr"),
        ({"lr": [[1]]}, "grid.lr"),
        ({"lr": [math.nan]}, "grid.lr"),
        ({f"p{n}": [1] for n in range(17)}, "grid"),
        ([1, 2], "grid"),
    ],
)
def test_invalid_grids_name_the_field(grid, field):
    with pytest.raises(Invalid) as caught:
        validate_grid(grid, 500)
    assert caught.value.field == field
    assert caught.value.status == 422


def test_too_many_points_is_refused():
    with pytest.raises(Invalid, match="at most 8"):
        validate_grid({"i": [0.1, 0.2, 0.3]}, 8)


def test_any_names_keep_their_order_types_and_the_given_order_of_strings():
    grid = validate_grid({"optimizer": ["sgd", "adam", "sgd"], "lr": [0.1, 0.01, 1],
                          "nesterov": [True, False], "i": ["not the assignment's"]}, 500,
                         rules={})
    assert list(grid) == ["optimizer", "lr", "nesterov", "i"]
    assert grid["optimizer"] == ["sgd", "adam"]  # a categorical axis keeps the grid's order
    assert grid["lr"] == [0.01, 0.1, 1]  # numbers sorted
    points = expand_grid(grid)
    assert len(points) == 2 * 3 * 2
    assert points[0] == {"optimizer": "sgd", "lr": 0.01, "nesterov": True,
                         "i": "not the assignment's"}


def test_true_and_one_are_different_values_but_one_and_one_point_zero_are_not():
    assert validate_grid({"x": [1, True, 1.0]}, 500) == {"x": [1, True]}


def test_a_configuration_is_the_same_whatever_the_order_of_its_parameters():
    assert config_key({"a": 1, "b": "x"}) == config_key({"b": "x", "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 1.0}) != config_key({"a": True})


def test_a_grid_naming_every_default_keeps_its_own_order_and_a_partial_one_the_defaults():
    defaults = {"kernel": ["rbf"], "C": [1.0], "gamma": [0.1]}
    given = validate_grid({"gamma": [0.01], "C": [2.0], "kernel": ["linear"]}, 100, defaults,
                          rules={})
    assert list(given) == ["gamma", "C", "kernel"]
    partial = validate_grid({"gamma": [0.01]}, 100, defaults, rules={})
    assert partial == {"kernel": ["rbf"], "C": [1.0], "gamma": [0.01]}
    assert list(partial) == ["kernel", "C", "gamma"]


def test_an_empty_grid_is_refused_and_an_absent_one_is_the_default():
    with pytest.raises(Invalid) as refused:
        validate_grid({}, 100)
    assert refused.value.field == "grid" and "leave grid out" in str(refused.value)
    assert validate_grid(None, 100) == DEFAULT_GRID
