"""A model's own code through the API: uploads (files, zip, tar.gz), what is refused and why,
versions listed and downloaded, experiments pinning the current version with the code's own
parameters and defaults, deletion collecting trees, and concurrent uploads."""

from __future__ import annotations

import asyncio
import io
import tarfile

import aiohttp
import pytest

from service.core.lookup import current_code
from service.execution.codetree import hash_tree, tree_version
from tests.api_support import make_model, upload_two_labels
from tests.conftest import make_settings
from tests.helpers import tar_gz_bytes, zip_bytes

TRAIN = b"import sys\nprint('accuracy=0.5')\n"
TREE = {"train.py": TRAIN, "test.py": b"print('ok')\n", "nets/resnet.py": b"# a net\n",
        "requirements.txt": b"numpy\n"}
TOML = b"""train = "src/fit.py"
metric = "loss"
minimize = true

[grid]
lr = [0.01, 0.001]
optimizer = ["adam", "sgd"]
"""


def files_form(files: dict[str, bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for path, data in files.items():
        form.add_field("files", data, filename=path, content_type="application/octet-stream")
    return form


def archive_form(data: bytes, name: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("archive", data, filename=name, content_type="application/octet-stream")
    return form


async def upload(client, model_id: int, form: aiohttp.FormData, status: int = 201) -> dict:
    response = await client.post(f"/api/v1/models/{model_id}/code", data=form)
    body = await response.json()
    assert response.status == status, body
    return body


async def error_of(client, model_id: int, form: aiohttp.FormData, status: int) -> str:
    body = await upload(client, model_id, form, status)
    return body["error"]["message"]


async def test_loose_files_give_a_version_named_by_the_tree(client, db, settings):
    model_id = await make_model(client)
    body = await upload(client, model_id, files_form(TREE))
    version = body["version"]
    assert (body["train"], body["test"], body["requirements"], body["defaults"]) == (
        "train.py", "test.py", "requirements.txt", None)
    assert [f["path"] for f in body["files"]] == sorted(TREE)
    stored = settings.code_dir / version
    assert (stored / "nets" / "resnet.py").read_bytes() == b"# a net\n"
    assert tree_version(hash_tree(stored)) == version
    shown = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert shown["code_version"] == version
    assert list(settings.tmp_dir.iterdir()) == []


async def test_zip_and_tar_gz_of_the_same_tree_are_the_same_version_uploaded_again(
        client, db, settings):
    model_id = await make_model(client)
    first = await upload(client, model_id, archive_form(zip_bytes(TREE), "code.zip"))
    # one top-level folder holding everything is unwrapped
    wrapped = {f"proj/{path}": data for path, data in TREE.items()}
    again = await upload(client, model_id, archive_form(tar_gz_bytes(wrapped), "code.tgz"),
                         status=200)
    assert again["version"] == first["version"]
    assert again["created_at"] == first["created_at"]
    assert again["uploaded_at"] >= first["uploaded_at"]
    assert [p.name for p in settings.code_dir.iterdir()] == [first["version"]]
    listed = await (await client.get(f"/api/v1/models/{model_id}/code")).json()
    assert len(listed["versions"]) == 1


async def test_refusals_name_what_is_wrong(client, db, settings):
    model_id = await make_model(client)
    no_train = await error_of(client, model_id, files_form({"fit.py": TRAIN}), 422)
    assert "no training entry point" in no_train
    dotdot = await error_of(client, model_id, files_form({"../train.py": TRAIN}), 422)
    assert "(..)" in dotdot
    absolute = await error_of(client, model_id, files_form({"/etc/train.py": TRAIN}), 422)
    assert "absolute path" in absolute
    twice = await error_of(client, model_id,
                           files_form({"train.py": TRAIN, "./train.py": TRAIN}), 422)
    assert "named twice" in twice
    link = tar_gz_bytes({"train.py": TRAIN}, links={"data": "/etc/passwd"})
    linked = await error_of(client, model_id, archive_form(link, "code.tar.gz"), 422)
    assert "'code.tar.gz:data'" in linked and "links" in linked
    both = aiohttp.FormData()
    both.add_field("archive", zip_bytes(TREE), filename="a.zip")
    both.add_field("files", TRAIN, filename="train.py")
    assert "not both" in await error_of(client, model_id, both, 422)
    missing = await error_of(client, model_id, files_form(
        {"train.py": TRAIN, "sweeplab.toml": b'test = "src/predict.py"\n'}), 422)
    assert "src/predict.py" in missing and "does not hold" in missing
    broken = await error_of(client, model_id, files_form(
        {"train.py": TRAIN, "sweeplab.toml": b"train = \n"}), 422)
    assert broken.startswith("sweeplab.toml: ") and "line 1" in broken
    bad_grid = await error_of(client, model_id, files_form(
        {"train.py": TRAIN, "sweeplab.toml": b"[grid]\nlr = []\n"}), 422)
    assert "[grid]" in bad_grid
    assert list(settings.code_dir.iterdir()) == []
    assert list(settings.tmp_dir.iterdir()) == []


async def test_over_the_limits_is_413(aiohttp_client, tmp_path, stub_broker, db):
    from service.app import create_app

    settings = make_settings(tmp_path / "small", SWEEPLAB_CODE_MAX_BYTES="1000",
                             SWEEPLAB_CODE_MAX_FILES="3")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    model_id = await make_model(client)
    big = await error_of(client, model_id, files_form({"train.py": b"#" * 2000}), 413)
    assert "1000 bytes" in big
    many = {f"m{n}.py": b"" for n in range(4)} | {"train.py": TRAIN}
    assert "more than 3 files" in await error_of(client, model_id, files_form(many), 413)
    zipped = await error_of(client, model_id, archive_form(zip_bytes(many), "c.zip"), 413)
    assert "SWEEPLAB_CODE_MAX_FILES" in zipped
    bomb = zip_bytes({"train.py": b"\0" * 5000})  # compresses below the limit, unpacks past it
    assert "1000" in await error_of(client, model_id, archive_form(bomb, "c.zip"), 413)


async def test_uploads_turned_off_are_403(aiohttp_client, tmp_path, stub_broker, db):
    from service.app import create_app

    settings = make_settings(tmp_path / "off", SWEEPLAB_CODE_UPLOADS="off")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    model_id = await make_model(client)
    response = await client.post(f"/api/v1/models/{model_id}/code", data=files_form(TREE))
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    assert "turned off on this deployment" in (await response.json())["error"]["message"]


async def test_versions_newest_first_and_the_download_round_trips(client, db):
    model_id = await make_model(client)
    first = await upload(client, model_id, files_form(TREE))
    second = await upload(client, model_id, files_form(TREE | {"extra.py": b"x = 1\n"}))
    listed = await (await client.get(f"/api/v1/models/{model_id}/code")).json()
    assert [v["version"] for v in listed["versions"]] == [second["version"], first["version"]]
    await upload(client, model_id, files_form(TREE), status=200)  # current again
    listed = await (await client.get(f"/api/v1/models/{model_id}/code")).json()
    assert [v["version"] for v in listed["versions"]] == [first["version"], second["version"]]
    one = await client.get(f"/api/v1/models/{model_id}/code/{second['version']}")
    assert (await one.json())["files"] == second["files"]
    tar = await client.get(f"/api/v1/models/{model_id}/code/{second['version']}?download=1")
    assert tar.status == 200 and tar.content_type == "application/x-tar"
    assert f"digits-{second['version'][:12]}.tar" in tar.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(await tar.read())) as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive}  # type: ignore[union-attr]
    assert files == TREE | {"extra.py": b"x = 1\n"}
    missing = await client.get(f"/api/v1/models/{model_id}/code/{'0' * 64}")
    assert missing.status == 404


async def experiment(client, model_id: int, body: dict, status: int = 201) -> dict:
    response = await client.post(f"/api/v1/models/{model_id}/experiments", json=body)
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def test_an_experiment_pins_the_code_current_at_its_creation(client, db):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    without = await experiment(client, model_id, {"grid": {"i": [0.1], "j": [1], "k": [5]}})
    assert without["code_version"] is None
    v1 = await upload(client, model_id, files_form(TREE))
    grid = {"lr": [0.1], "optimizer": ["adam"], "dropout": [True]}
    first = await experiment(client, model_id, {"grid": grid})
    v2 = await upload(client, model_id, files_form(TREE | {"v2.py": b""}))
    shown = await (await client.get(f"/api/v1/experiments/{first['id']}")).json()
    assert shown["code_version"] == v1["version"]
    second = await experiment(client, model_id, {"grid": grid})
    assert second["code_version"] == v2["version"]
    assert second["runs"][0]["params"] == {"lr": 0.1, "optimizer": "adam", "dropout": True}
    # the code has no default grid: the body must give one
    needs_grid = await experiment(client, model_id, {}, status=422)
    assert needs_grid["error"]["field"] == "grid"


async def test_the_tomls_grid_and_objective_are_the_defaults(client, db):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    body = await upload(client, model_id, files_form(
        {"src/fit.py": TRAIN, "sweeplab.toml": TOML}))
    assert body["train"] == "src/fit.py" and body["test"] is None
    assert body["defaults"] == {"grid": {"lr": [0.001, 0.01], "optimizer": ["adam", "sgd"]},
                                "metric": "loss", "minimize": True}
    made = await experiment(client, model_id, {})
    assert made["grid"] == body["defaults"]["grid"]
    assert made["objective"] == {"metric": "loss", "direction": "minimize"}
    assert len(made["runs"]) == 4
    # a value the assignment's rules would refuse for i is the code's own business
    custom = await experiment(client, model_id, {"grid": {"i": [-5], "lr": [2]}})
    assert custom["runs"][0]["params"] == {"i": -5, "lr": 2}


def test_a_claimed_runs_spec_carries_the_pinned_code(db, settings):
    from service.core.tables import CodeVersion, Experiment, MLModel, Run
    from service.runs.state import _spec_of

    model = MLModel.create(name="m")
    CodeVersion.create(model=model, version="a" * 64, files=[], train="src/fit.py",
                       test=None, requirements="requirements.txt")
    pinned = Experiment.create(model=model, grid={"lr": [1]}, timeout_s=60,
                               code_version="a" * 64)
    run = Run.create(experiment=pinned, params={"lr": 1}, config="c")
    assert _spec_of(run, pinned)["code"] == {"version": "a" * 64, "train": "src/fit.py",
                                             "test": None,
                                             "requirements": "requirements.txt"}
    assert current_code(model.id).version == "a" * 64  # type: ignore[union-attr]


async def test_deleting_a_model_keeps_trees_another_model_uses(client, db, settings):
    first, second = await make_model(client, "a"), await make_model(client, "b")
    shared = await upload(client, first, files_form(TREE))
    await upload(client, second, files_form(TREE))
    own = await upload(client, first, files_form(TREE | {"own.py": b""}))
    assert (await client.delete(f"/api/v1/models/{first}")).status == 204
    assert sorted(p.name for p in settings.code_dir.iterdir()) == [shared["version"]]
    assert (await client.delete(f"/api/v1/models/{second}")).status == 204
    assert list(settings.code_dir.iterdir()) == []
    assert own["version"] != shared["version"]


async def test_concurrent_uploads_store_each_tree_once(client, db, settings):
    first, second = await make_model(client, "a"), await make_model(client, "b")
    forms = [(model, files_form(TREE)) for model in (first, second) for _ in range(3)]
    answers = await asyncio.gather(*(client.post(f"/api/v1/models/{model}/code", data=form)
                                     for model, form in forms))
    statuses = sorted(response.status for response in answers)
    assert statuses == [200, 200, 200, 200, 201, 201]
    versions = {(await response.json())["version"] for response in answers}
    assert len(versions) == 1
    assert [p.name for p in settings.code_dir.iterdir()] == list(versions)


@pytest.mark.parametrize("name", ["code.tar", "code.zip"])
async def test_an_archive_with_folders_and_data_files_keeps_them(client, db, name):
    model_id = await make_model(client)
    tree = TREE | {"data/weights.zip": zip_bytes({"w": b"1"}), ".config/x.yml": b"a: 1\n"}
    data = zip_bytes(tree) if name.endswith(".zip") else tar_gz_bytes(tree, mode="w")
    body = await upload(client, model_id, archive_form(data, name))
    assert {f["path"] for f in body["files"]} == set(tree)


@pytest.fixture
def pg_settings(postgres_database, tmp_path):
    from service.core.db import database, open_database
    from service.migrate import apply_migrations
    from service.settings import ensure_data_dirs

    settings = make_settings(tmp_path / "pg", SWEEPLAB_DATABASE_URL=postgres_database[0])
    ensure_data_dirs(settings)
    open_database(settings.database_url)
    database.connect(reuse_if_open=True)
    apply_migrations()
    yield settings
    database.close()


async def test_concurrent_uploads_and_a_deletion_on_postgresql(aiohttp_client, pg_settings,
                                                               stub_broker):
    from service.app import create_app

    client = await aiohttp_client(create_app(pg_settings, broker=stub_broker))
    keep, gone = await make_model(client, "keep"), await make_model(client, "gone")
    await upload(client, gone, files_form(TREE))
    # uploads of the same tree race the deletion of the other model that has it
    answers = await asyncio.gather(
        client.delete(f"/api/v1/models/{gone}"),
        *(client.post(f"/api/v1/models/{keep}/code", data=files_form(TREE)) for _ in range(4)))
    assert answers[0].status == 204
    assert sorted(response.status for response in answers[1:]) == [200, 200, 200, 201]
    version = (await answers[1].json())["version"]
    assert tree_version(hash_tree(pg_settings.code_dir / version)) == version
    shown = await (await client.get(f"/api/v1/models/{keep}")).json()
    assert shown["code_version"] == version


async def test_unknown_query_parameters_and_a_bad_download_value_are_refused(client, db):
    # Given a model with a code version
    model_id = await make_model(client)
    version = await upload(client, model_id, files_form(TREE))
    base = f"/api/v1/models/{model_id}/code/{version['version']}"
    # When a query the route does not take, or a download value it does not know, is sent
    misspelt = await client.get(f"{base}?downlaod=1")
    wrong = await client.get(f"{base}?download=yes")
    runs = await client.get("/api/v1/experiments/1/runs?statuss=failed")
    # Then each is a 422 naming it
    assert misspelt.status == 422 and (await misspelt.json())["error"]["field"] == "downlaod"
    assert wrong.status == 422 and (await wrong.json())["error"]["field"] == "download"
    assert runs.status == 422 and (await runs.json())["error"]["field"] == "statuss"
