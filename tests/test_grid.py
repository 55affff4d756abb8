import math

import pytest

from service.core.errors import Invalid
from service.sweeps.grid import DEFAULT_GRID, GridPoint, expand_grid, validate_grid


def test_default_grid_has_27_points_in_stable_order():
    points = expand_grid(validate_grid(None, 500))
    assert len(points) == 27
    assert points[0] == GridPoint(0.001, 1, 1000)
    assert points[-1] == GridPoint(0.1, 4, 4000)
    assert validate_grid({}, 500) == DEFAULT_GRID


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
        ({"x": [1]}, "grid"),
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
