"""Big sweeps (issue 24) through the API: the run limit's default, the paged runs route, the
experiment view of a large experiment and the incremental statistics."""

from __future__ import annotations

from service.settings import DEFAULTS
from tests.api_support import model_with_images


async def test_the_run_limit_defaults_to_20000_and_bounds_a_search_too(client, db):
    assert DEFAULTS["SWEEPLAB_MAX_GRID_POINTS"][0] == "20000"
    model_id = await model_with_images(client)
    response = await client.post(f"/api/v1/models/{model_id}/experiments", json={
        "search": {"strategy": "random", "runs": 20001, "seed": 1},
        "grid": {"i": {"low": 0.001, "high": 1.0}}, "start": False})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["field"] == "search.runs" and "20000" in error["message"]
