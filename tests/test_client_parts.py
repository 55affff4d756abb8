"""The client's parts without a running service: `--grid` and sweep files, the config file
(0600), uploads' labels and batches, the operations it calls checked against the OpenAPI
document, and the server's /client/ route and dashboard footer (in process)."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from sweeplab_client import __version__, config
from sweeplab_client.operations import FIELDS_READ, OPERATIONS, PREDICT_LIMIT_PATH
from sweeplab_client.sweepspec import (
    SpecError,
    experiment_body,
    load_file,
    parse_grid,
    parse_value,
)
from sweeplab_client.upload import batches, collect

from service.web import client_wheel
from service.web.api.health import openapi_document
from tests.e2e_support import free_port
from tests.helpers import png_bytes, sweeplab

ROOT = Path(__file__).resolve().parent.parent


# --- --grid and sweep.yaml ------------------------------------------------------------------

def test_grid_values_are_numbers_when_they_parse_booleans_for_true_false_else_strings():
    grid = parse_grid(["lr=0.001,0.01", "layers=1, 2", "optimizer=adam,sgd",
                       "nesterov=true,False", "odd=nan,inf,1e3,-4,+5"])
    assert grid == {"lr": [0.001, 0.01], "layers": [1, 2], "optimizer": ["adam", "sgd"],
                    "nesterov": [True, False], "odd": ["nan", "inf", 1000.0, -4, 5]}
    assert [type(value) for value in grid["layers"]] == [int, int]
    assert parse_value("1.0") == 1.0 and isinstance(parse_value("1.0"), float)


@pytest.mark.parametrize("option", ["lr", "=1,2", "lr=", "lr=,", "2x=1", "a-b=1"])
def test_a_grid_option_without_a_name_or_values_is_refused_naming_it(option):
    with pytest.raises(SpecError, match="--grid"):
        parse_grid([option])


def test_a_sweep_file_is_the_body_and_options_go_on_top(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("grid:\n  lr: [0.1, 0.01]\n  layers: [1]\nrepeats: 2\n"
                          "search: {strategy: random, runs: 3}\ntimeout_s: 60\n")
    body = experiment_body(load_file(sweep_file), grid={"layers": [2, 4]}, runs=5, seed=7,
                           metric="loss", minimize=True)
    assert body == {"grid": {"lr": [0.1, 0.01], "layers": [2, 4]}, "repeats": 2,
                    "search": {"strategy": "random", "runs": 5, "seed": 7}, "timeout_s": 60,
                    "objective": {"metric": "loss", "direction": "minimize"}}
    assert experiment_body() == {}
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_file(tmp_path / "list.yaml")


# --- the config file ----------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in ("SWEEPLAB_URL", "SWEEPLAB_TOKEN", "SWEEPLAB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_a_saved_login_is_readable_by_its_owner_only_and_profiles_keep_apart(home, monkeypatch):
    old = config.config_dir()
    old.mkdir(parents=True)
    (old / "config.ini").write_text("")
    os.chmod(old / "config.ini", 0o644)  # a file made by hand, readable by all
    path = config.save_profile("default", "http://a.example:8080/", "token-a")
    config.save_profile("gpu", "http://b.example:8080", "token-b")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path == home / ".config" / "sweeplab" / "config.ini"
    assert config.resolve() == config.Target("http://a.example:8080", "token-a", "default")
    assert config.resolve(profile="gpu").token == "token-b"
    # the environment wins over the default profile, a profile named wins over it
    monkeypatch.setenv("SWEEPLAB_URL", "http://env.example")
    monkeypatch.setenv("SWEEPLAB_TOKEN", "token-env")
    assert config.resolve() == config.Target("http://env.example", "token-env", None)
    assert config.resolve(profile="gpu").url == "http://b.example:8080"
    with pytest.raises(config.ConfigError, match="no profile 'cpu'"):
        config.resolve(profile="cpu")


def test_no_server_at_all_says_how_to_name_one(home):
    with pytest.raises(config.ConfigError, match="sweeplab login URL"):
        config.resolve()


# --- uploads ------------------------------------------------------------------------------------

def test_a_folder_of_sub_folders_is_labelled_by_them_and_sent_in_bounded_batches(tmp_path):
    for label in ("7", "cat"):
        (tmp_path / "digits" / label).mkdir(parents=True)
        for n in range(3):
            (tmp_path / "digits" / label / f"{n}.png").write_bytes(png_bytes(n, 8 + n))
    (tmp_path / "digits" / "loose.png").write_bytes(png_bytes(9))
    (tmp_path / "digits" / ".DS_Store").write_bytes(b"junk")
    items = collect([str(tmp_path / "digits")])
    assert [(item.name, item.label) for item in items] == [
        ("7/0.png", "7"), ("7/1.png", "7"), ("7/2.png", "7"),
        ("cat/0.png", "cat"), ("cat/1.png", "cat"), ("cat/2.png", "cat"), ("loose.png", None)]
    largest = max(item.size for item in items)
    groups = list(batches(items, max_bytes=largest * 2))
    assert all(sum(item.size for item in group) <= largest * 2 for group in groups)
    assert [item for group in groups for item in group] == items and len(groups) >= 4


# --- what the client calls exists, with the fields it reads ---------------------------------------

def _schema_names(response: dict) -> set[str]:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    refs = [schema] + schema.get("oneOf", [])
    return {ref["$ref"].rsplit("/", 1)[1] for ref in refs if "$ref" in ref}


def test_every_operation_the_client_calls_is_in_the_openapi_document():
    document = openapi_document()
    for operation_id, operation in OPERATIONS.items():
        item = document["paths"].get(operation.path)
        assert item is not None, f"{operation_id}: no path {operation.path}"
        described = item.get(operation.method.lower())
        assert described is not None, f"{operation_id}: no {operation.method} {operation.path}"
        assert described["operationId"] == operation_id
        if operation.answer:
            answers = [_schema_names(response) for status, response
                       in described["responses"].items() if status.startswith("2")]
            assert any(operation.answer in names for names in answers), operation_id


def test_every_field_the_client_reads_is_in_its_schema():
    schemas = openapi_document()["components"]["schemas"]
    assert set(FIELDS_READ) >= {op.answer for op in OPERATIONS.values() if op.answer}
    for name, fields in FIELDS_READ.items():
        missing = set(fields) - set(schemas[name]["properties"])
        assert not missing, f"{name} has no {sorted(missing)}"
    node = openapi_document()
    for key in PREDICT_LIMIT_PATH:
        node = node[key]
    assert node == 64


def test_the_client_version_is_the_one_the_server_serves():
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert project["version"] == __version__ == client_wheel.client_version()
    assert client_wheel.wheel_name() == f"sweeplab_client-{__version__}-py3-none-any.whl"
    assert not any("service" in dependency for dependency in project["dependencies"])
    imports = "\n".join(path.read_text() for path in (ROOT / "client").rglob("*.py"))
    assert "import service" not in imports and "from service" not in imports


# --- the command without a server -------------------------------------------------------------

def test_an_unreachable_server_is_one_line_and_exit_2(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = sweeplab("models", home=tmp_path, SWEEPLAB_URL=url)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"sweeplab: cannot reach {url}")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_usage_errors_exit_2_before_any_request(tmp_path):
    done = sweeplab("sweep", "1", "--grid", "lr", home=tmp_path,
                     SWEEPLAB_URL=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "--grid 'lr': expected NAME=V1,V2" in done.stderr
    assert sweeplab("models", home=tmp_path).returncode == 2  # no server configured
    assert sweeplab("nonsense", home=tmp_path).returncode == 2
    helped = sweeplab("--help", home=tmp_path)
    assert helped.returncode == 0 and "watch" in helped.stdout


# --- the server's side: /client/ and the footer ---------------------------------------------

async def test_the_server_serves_the_built_wheel_and_says_how_to_build_a_missing_one(
        client, tmp_path, monkeypatch):
    monkeypatch.setattr(client_wheel, "WHEEL_DIR", tmp_path / "dist")
    response = await client.get("/client/")
    assert response.status == 404
    assert "scripts/setup.sh" in (await response.json())["error"]["message"]
    page = await (await client.get("/")).text()
    assert "pip install" not in page  # no footer line for a wheel that is not there
    name = client_wheel.wheel_name()
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / name).write_bytes(b"PK wheel bytes")
    listed = await (await client.get("/client/")).json()
    origin = f"http://{client.host}:{client.port}"
    assert listed == {"version": __version__, "wheel": f"/client/{name}",
                      "install": f"pip install {origin}/client/{name}"}
    wheel = await client.get(f"/client/{name}")
    assert wheel.status == 200 and await wheel.read() == b"PK wheel bytes"
    other = await client.get("/client/sweeplab_client-0.0.1-py3-none-any.whl")
    assert other.status == 404 and name in (await other.json())["error"]["message"]
    page = await (await client.get("/")).text()
    assert f"pip install {origin}/client/{name}" in page
