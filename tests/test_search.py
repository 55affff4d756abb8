"""Random and TPE search (Optuna's samplers, ask-and-tell): validated bodies, the same seed giving
the same configurations, TPE never more than `parallel` configurations in flight, and TPE
getting closer to a known optimum than random search with the same budget."""

from __future__ import annotations

import statistics
from datetime import datetime

import pytest

from tests.api_support import make_model, upload_two_labels
from tests.e2e_support import FAKE_SCRIPTS, small_dataset

RANGES = {"i": {"low": 1e-4, "high": 1.0, "log": True}, "j": {"low": 1, "high": 8},
          "k": {"low": 500, "high": 5000}}


@pytest.mark.parametrize(("body", "field"), [
    ({"search": {"strategy": "hyperband"}}, "search.strategy"),
    ({"search": {"strategy": {}}}, "search.strategy"),
    ({"search": ["random"]}, "search"),
    ({"early_stopping": {"rule": ["median"]}}, "early_stopping.rule"),
    ({"search": {"strategy": "random", "runs": 3}, "grid": {"i": {"low": "a", "high": 1}}},
     "grid.i.low"),
    ({"search": {"strategy": "random", "runs": 0}}, "search.runs"),
    ({"search": {"strategy": "random"}}, "search.runs"),
    ({"search": {"strategy": "tpe", "runs": 5, "parallel": 0}}, "search.parallel"),
    ({"search": {"strategy": "random", "runs": 5, "parallel": 2}}, "search"),
    ({"search": {"strategy": "random", "runs": 5, "seed": -1}}, "search.seed"),
    ({"search": {"strategy": "tpe", "runs": 5},
      "grid": {"i": {"low": 0.1, "high": 0.1}}}, "grid.i"),
    ({"search": {"strategy": "tpe", "runs": 5},
      "grid": {"k": {"low": 4000, "high": 1000}}}, "grid.k"),
    ({"search": {"strategy": "random", "runs": 5},
      "grid": {"i": {"low": 0, "high": 1, "log": True}}}, "grid.i.low"),
    ({"search": {"strategy": "random", "runs": 5},
      "grid": {"j": {"low": 1, "high": 8, "step": 2}}}, "grid.j"),
    ({"search": {"strategy": "random", "runs": 5},
      "grid": {"j": {"low": 1.5, "high": 8}}}, "grid.j.low"),
    ({"grid": {"i": {"low": 0.001, "high": 0.1}}}, "grid"),
    ({"repeats": 0}, "repeats"),
    ({"repeats": 21}, "repeats"),
    ({"repeats": 2.5}, "repeats"),
    ({"objective": {"direction": "up"}}, "objective.direction"),
    ({"objective": {"metric": "a b"}}, "objective.metric"),
    ({"objective": {"metric": "loss", "goal": 1}}, "objective"),
    ({"objective": "loss"}, "objective"),
    ({"early_stopping": {"rule": "patience"}}, "early_stopping.rule"),
    ({"early_stopping": {"rule": "median", "min_step": 0}}, "early_stopping.min_step"),
    ({"reuse": "yes"}, "reuse"),
])
async def test_every_new_field_is_validated_naming_it(client, db, body, field):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    response = await client.post(f"/api/v1/models/{model_id}/experiments", json=body)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["field"] == field
    listed = await (await client.get(f"/api/v1/models/{model_id}/experiments")).json()
    assert listed["experiments"] == []  # nothing half-made


async def _created(client, model_id: int, body: dict) -> dict:
    response = await client.post(f"/api/v1/models/{model_id}/experiments",
                                 json={**body, "start": False})
    assert response.status == 201, await response.text()
    return await response.json()


def _configurations(experiment: dict) -> list[tuple]:
    return [(run["trial"], run["seed"], run["params"]["i"], run["params"]["j"],
             run["params"]["k"]) for run in sorted(experiment["runs"], key=lambda r: r["id"])]


async def test_random_search_same_seed_same_configurations(client, db):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    body = {"search": {"strategy": "random", "runs": 12, "seed": 7}, "repeats": 2,
            "grid": {"i": {"low": 1e-4, "high": 0.5, "log": True}, "j": [1, 2, 4],
                     "k": {"low": 100, "high": 9000}}}
    first, again = await _created(client, model_id, body), await _created(client, model_id, body)
    other = await _created(client, model_id, {**body, "search": {**body["search"], "seed": 8}})
    # 12 configurations, each once per seed, within their ranges and lists
    assert first["search"] == {"strategy": "random", "runs": 12, "seed": 7}
    assert len(first["runs"]) == 24
    assert sorted({c[0] for c in _configurations(first)}) == list(range(12))
    for _, _, i, j, k in _configurations(first):
        assert 1e-4 <= i <= 0.5 and j in (1, 2, 4) and 100 <= k <= 9000 and isinstance(k, int)
    # the same seed gives the same configurations; another seed others
    assert _configurations(first) == _configurations(again) != _configurations(other)
    # a seed left out is drawn and shown, so the search can be repeated
    drawn = await _created(client, model_id, {"search": {"strategy": "random", "runs": 3}})
    assert isinstance(drawn["search"]["seed"], int)


def _overlap(runs: list[dict]) -> int:
    """The most runs that were running at the same moment."""
    events = []
    for run in runs:
        events += [(datetime.fromisoformat(run["started_at"]), 1),
                   (datetime.fromisoformat(run["finished_at"]), -1)]
    most = current = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        current += change
        most = max(most, current)
    return most


@pytest.mark.e2e
def test_tpe_gets_closer_to_the_optimum_than_random_search(make_stack):
    # Given a script whose accuracy is a known smooth function of i, j, k, 1.0 at its optimum
    # (i=0.01, j=3, k=2500, inside the ranges), and 4 worker threads on the real RabbitMQ
    stack = make_stack(threads=4, FAKE_TRAIN_MODE="smooth", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    # When TPE (one configuration at a time) and random search each get 30 runs, on 5 seeds.
    # Why 5 and why this is not flaky: with parallel=1 and a deterministic script, a search
    # is a deterministic function of its seed (each ask is seeded by the search's seed and the
    # trials so far), so the same 10 searches run every time. Seeds 0-4 were not picked out: on
    # 0-7, TPE's mean gap to the optimum is about a third of random search's.
    experiments = {}
    for seed in range(5):
        for strategy in ("tpe", "random"):
            search = {"strategy": strategy, "runs": 30, "seed": seed}
            if strategy == "tpe":
                search["parallel"] = 1
            status, created = stack.request(
                "POST", f"/api/v1/models/{model_id}/experiments",
                {"search": search, "grid": RANGES, "reuse": False})
            assert status == 201, created
            experiments[strategy, seed] = created["id"]
    gaps: dict[str, list[float]] = {"tpe": [], "random": []}
    for (strategy, _), experiment_id in experiments.items():
        done = stack.wait_for_experiment(experiment_id)
        assert done["status"] == "completed" and done["counts"]["succeeded"] == 30
        assert sorted(run["trial"] for run in done["runs"]) == list(range(30))
        if strategy == "tpe":
            assert _overlap(done["runs"]) == 1  # never more than `parallel` in flight
        gaps[strategy].append(1 - done["best"]["value"])
    # Then TPE ends closer to the optimum, on average over the seeds
    assert statistics.mean(gaps["tpe"]) < statistics.mean(gaps["random"]), gaps


@pytest.mark.e2e
def test_tpe_keeps_at_most_parallel_configurations_in_flight(make_stack):
    stack = make_stack(threads=6, FAKE_TRAIN_MODE="smooth", FAKE_TRAIN_SLEEP="0.3",
                       **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    status, created = stack.request(
        "POST", f"/api/v1/models/{model_id}/experiments",
        {"search": {"strategy": "tpe", "runs": 8, "parallel": 2, "seed": 1}, "repeats": 2,
         "grid": RANGES, "reuse": False})
    assert status == 201, created
    assert len(created["runs"]) == 4  # the first two configurations, each twice
    done = stack.wait_for_experiment(created["id"])
    assert done["counts"]["succeeded"] == 16 and done["status"] == "completed"
    # six threads were free, yet no more than two configurations (four runs) ran at once
    assert _overlap(done["runs"]) <= 4
    assert all(config["n"] == 2 for config in done["configurations"])
