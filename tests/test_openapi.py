"""The OpenAPI document: valid as written and as served, named for generated clients, and
carrying the limits the server enforces (the deployment's, when served)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from service.app import create_app
from service.settings import DEFAULTS, ensure_data_dirs
from service.sweeps.grid import MAX_PARAMS, MAX_VALUES_PER_KEY
from service.web.api.health import OPENAPI_PATH, openapi_document
from tests.conftest import make_settings

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
VERBS = {"create", "list", "get", "delete", "upload", "predict", "start", "cancel", "retry"}
SNAKE_CASE = re.compile(r"[a-z]+(_[a-z0-9]+)*")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def schemas(document: dict[str, Any]) -> dict[str, Any]:
    return document["components"]["schemas"]


def nulls(node: Any, where: str = "") -> list[str]:
    """Keys whose value is null: what an unquoted comma in a flow mapping leaves behind."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    found = []
    for key, value in items:
        found += [f"{where}/{key}"] if value is None else nulls(value, f"{where}/{key}")
    return found


async def app_client(aiohttp_client, stub_broker, tmp_path: Path, **env: str):
    """The app in process, with the settings of a deployment that sets `env`."""
    settings = make_settings(tmp_path / "data", **env)
    ensure_data_dirs(settings)
    return await aiohttp_client(create_app(settings, broker=stub_broker))


async def served(client) -> dict[str, Any]:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    return await response.json()


# --- valid OpenAPI ---------------------------------------------------------------------------

def test_the_yaml_is_valid_openapi():
    validate(openapi_document())


def test_no_key_of_the_yaml_is_null():
    assert nulls(openapi_document()) == []


async def test_the_served_document_is_valid_openapi(aiohttp_client, stub_broker, tmp_path):
    document = await served(await app_client(aiohttp_client, stub_broker, tmp_path))
    validate(document)
    assert document["paths"] == openapi_document()["paths"]


# --- names for clients -----------------------------------------------------------------------

def test_every_operation_has_a_unique_verb_first_snake_case_operation_id():
    ids = [operation.get("operationId", "") for *_, operation in operations(openapi_document())]
    assert all(SNAKE_CASE.fullmatch(name) for name in ids), ids
    assert len(set(ids)) == len(ids), ids
    assert {name.split("_")[0] for name in ids} <= VERBS, ids


def test_every_request_body_is_a_named_component_schema():
    document = openapi_document()
    for method, path, operation in operations(document):
        for media_type in operation.get("requestBody", {}).get("content", {}).values():
            reference = media_type["schema"].get("$ref", "")
            assert reference.startswith("#/components/schemas/"), (method, path)
            assert reference.rsplit("/", 1)[1] in schemas(document)


def test_a_generated_client_is_named_after_the_operation_ids(tmp_path):
    # Given the document, when openapi-python-client generates a client from it
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the names are what matters
    command = [str(Path(sys.executable).parent / "openapi-python-client"), "generate",
               "--path", str(OPENAPI_PATH), "--meta", "none",
               "--output-path", str(tmp_path / "client"), "--config", str(config),
               "--fail-on-warning"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # Then each operation is a module named after its operationId, under its tag
    generated = {path.relative_to(tmp_path / "client").as_posix()
                 for path in (tmp_path / "client").rglob("*.py")}
    for _, _, operation in operations(openapi_document()):
        assert f"api/{operation['tags'][0]}/{operation['operationId']}.py" in generated
    # And the request bodies are the named schemas, not PostApiV1...Body
    assert not [name for name in generated if "body" in name or "api_v1" in name]
    assert "body: ModelCreate" in (tmp_path / "client/api/models/create_model.py").read_text()
    assert "body: ExperimentCreate" in (
        tmp_path / "client/api/experiments/create_experiment.py").read_text()


# --- limits ----------------------------------------------------------------------------------

def test_the_yaml_carries_the_default_limits():
    document = openapi_document()
    timeout_s = schemas(document)["ExperimentCreate"]["properties"]["timeout_s"]
    assert timeout_s["maximum"] == float(DEFAULTS["SWEEPLAB_MAX_RUN_TIMEOUT_S"][0])
    grid = schemas(document)["Grid"]
    assert grid["x-max-grid-points"] == int(DEFAULTS["SWEEPLAB_MAX_GRID_POINTS"][0])
    assert f"at most {grid['x-max-grid-points']} grid points" in grid["description"]
    assert grid["additionalProperties"]["oneOf"][0]["maxItems"] == MAX_VALUES_PER_KEY
    assert grid["maxProperties"] == MAX_PARAMS
    assert schemas(document)["Search"]["properties"]["runs"]["maximum"] == grid[
        "x-max-grid-points"]


async def test_the_served_document_carries_the_deployments_limits(aiohttp_client, stub_broker,
                                                                  tmp_path):
    client = await app_client(aiohttp_client, stub_broker, tmp_path,
                              SWEEPLAB_MAX_RUN_TIMEOUT_S="3000", SWEEPLAB_MAX_GRID_POINTS="50")
    document = await served(client)
    timeout_s = schemas(document)["ExperimentCreate"]["properties"]["timeout_s"]
    assert timeout_s["maximum"] == 3000
    assert "at most 3000 (SWEEPLAB_MAX_RUN_TIMEOUT_S)" in timeout_s["description"]
    grid = schemas(document)["Grid"]
    assert grid["x-max-grid-points"] == 50
    assert "at most 50 grid points" in grid["description"]
    runs = schemas(document)["Search"]["properties"]["runs"]
    assert runs["maximum"] == 50 and "at most 50 (SWEEPLAB_MAX_GRID_POINTS)" in runs["description"]
    validate(document)


def limit_cases(limits: dict[str, Any]) -> list[tuple[dict, dict, str]]:
    """(a body at a documented limit, the same one past it, the field the 422 names)."""
    timeout_s = limits["ExperimentCreate"]["properties"]["timeout_s"]["maximum"]
    grid = limits["Grid"]
    per_axis, points = grid["additionalProperties"]["oneOf"][0]["maxItems"], grid[
        "x-max-grid-points"]
    one = {"i": [0.1], "j": [1], "k": [1]}
    names = grid["maxProperties"]
    return [
        ({"timeout_s": timeout_s}, {"timeout_s": timeout_s + 1}, "timeout_s"),
        ({"grid": {f"p{n}": [1] for n in range(names)}},
         {"grid": {f"p{n}": [1] for n in range(names + 1)}}, "grid"),
        ({"grid": {**one, "k": list(range(1, per_axis + 1))}},
         {"grid": {**one, "k": list(range(1, per_axis + 2))}}, "grid.k"),
        ({"grid": {**one, "i": [0.1, 0.2], "k": list(range(1, points // 2 + 1))}},
         {"grid": {**one, "i": [0.1, 0.2, 0.3], "k": list(range(1, points // 3 + 2))}}, "grid"),
    ]


async def test_the_schema_limits_are_where_the_server_draws_the_line(aiohttp_client,
                                                                     stub_broker, tmp_path):
    # Given a deployment with limits of its own and a model without images (so a body that
    # passes validation is a 409, one that does not a 422)
    client = await app_client(aiohttp_client, stub_broker, tmp_path,
                              SWEEPLAB_MAX_RUN_TIMEOUT_S="3000", SWEEPLAB_MAX_GRID_POINTS="2000")
    limits = schemas(await served(client))
    model = await (await client.post("/api/v1/models", json={"name": "limits"})).json()
    url = f"/api/v1/models/{model['id']}/experiments"
    for at_limit, past_limit, field in limit_cases(limits):
        # When a body is at the served limit, then it is valid
        response = await client.post(url, json=at_limit)
        assert response.status == 409, (field, await response.text())
        # And the same body past it is refused, naming the field
        response = await client.post(url, json=past_limit)
        assert response.status == 422, (field, await response.text())
        assert (await response.json())["error"]["field"] == field
