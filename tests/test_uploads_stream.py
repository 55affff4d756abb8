"""The upload path reads every byte once: each part straight to its own file, hashed on the way;
archive members hashed as they are unpacked; small files checked from memory."""

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from aiohttp import BodyPartReader, FormData, web

import service.ingest.receive as receive
from service.ingest.archives import ArchiveLimits, unpack
from service.ingest.receive import receive_files
from tests.conftest import make_settings
from tests.helpers import png_bytes

HEADERS = [
    'form-data; name="images"; filename="a.png"',
    'form-data; name="label"',
    'form-data; name="images"; filename=""',
    'form-data; name="images"; filename="with space and ünïcode.png"',
    'form-data; name="images"; filename="/etc/passwd"',
    'form-data; name="images"; filename="a\\"b.png"',
    'form-data; name="images"; filename="a;b.png"',
    'form-data; name="images"; filename*=UTF-8\'\'%C3%A9.png',
    'form-data; filename="a.png"; name="images"',
    'Form-Data; NAME="images"; filename="a.png"',
    'form-data; name="images"; filename="a.png" ',
    'form-data; name=images; filename=a.png',
    'attachment; name="images"; filename="a.png"',
]


@pytest.mark.parametrize("header", HEADERS)
def test_the_fast_disposition_reading_agrees_with_aiohttp(header):
    part = BodyPartReader(b"--x", {"Content-Disposition": header}, None)  # type: ignore[arg-type]
    assert receive._disposition(part) == (part.name, part.filename)


async def _receive_app(aiohttp_client, tmp_path: Path):
    """A route that receives the files and answers what it found on disk."""
    settings = make_settings(tmp_path / "data")
    temp_dir = tmp_path / "upload"
    temp_dir.mkdir()

    async def handler(request: web.Request) -> web.Response:
        received = await receive_files(request, settings, temp_dir, "images", labels=True)
        on_disk = {p.name: p.read_bytes() for p in sorted(temp_dir.iterdir())}
        return web.json_response({
            "files": [{"path": f.path.name, "size": f.size, "sha256": f.sha256,
                       "archive": f.archive, "kept": f.data is not None, "label": f.label}
                      for f in received.files],
            "on_disk": {name: hashlib.sha256(data).hexdigest()
                        for name, data in on_disk.items()}})

    app = web.Application()
    app.router.add_post("/", handler)
    return await aiohttp_client(app)


async def test_a_large_part_is_written_once_and_hashed_across_many_chunks(
        aiohttp_client, tmp_path, monkeypatch):
    # Given small read and write sizes, so the part crosses many chunks and many writes
    monkeypatch.setattr(receive, "CHUNK", 4096)
    monkeypatch.setattr(receive, "WRITE_SIZE", 64 << 10)
    writes: list[int] = []
    real_stream = receive._Part.stream

    async def counted(self, writer):
        writes.append(self.pending)
        await real_stream(self, writer)

    monkeypatch.setattr(receive._Part, "stream", counted)
    big = os.urandom((3 << 20) + 12345)
    small = png_bytes(3)
    client = await _receive_app(aiohttp_client, tmp_path)
    form = FormData()
    form.add_field("label", "7")
    form.add_field("images", big, filename="big.png")
    form.add_field("images", small, filename="small.png")
    # When it is uploaded
    body = await (await client.post("/", data=form)).json()
    # Then each part has one file of its own, holding exactly its bytes, hashed right
    big_sha, small_sha = hashlib.sha256(big).hexdigest(), hashlib.sha256(small).hexdigest()
    assert body["on_disk"] == {"part-000000": big_sha, "part-000001": small_sha}
    assert [f["sha256"] for f in body["files"]] == [big_sha, small_sha]
    assert [f["size"] for f in body["files"]] == [len(big), len(small)]
    assert [f["label"] for f in body["files"]] == ["7", "7"]
    # and the large part went to disk in many writes, every byte once, none kept in memory
    assert len(writes) > 10 and sum(writes) == len(big)
    assert max(writes) <= (64 << 10) + 4096
    assert [f["kept"] for f in body["files"]] == [False, True]


async def test_an_archive_part_is_not_hashed_but_recognised(aiohttp_client, tmp_path):
    client = await _receive_app(aiohttp_client, tmp_path)
    form = FormData()
    form.add_field("images", b"PK\x03\x04 rest", filename="no-suffix")
    form.add_field("images", b"\x1f\x8b\x08 rest", filename="x.bin")
    form.add_field("images", b"ab", filename="tiny.tar")
    form.add_field("images", b"ab", filename="tiny.png")
    body = await (await client.post("/", data=form)).json()
    assert [f["archive"] for f in body["files"]] == [True, True, True, False]
    assert [f["sha256"] is None for f in body["files"]] == [True, True, True, False]
    assert len(body["on_disk"]) == 4


async def test_many_small_parts_are_batched_in_order(aiohttp_client, tmp_path, monkeypatch):
    monkeypatch.setattr(receive, "BATCH_FILES", 7)
    monkeypatch.setattr(receive, "KEEP_BYTES", 2000)  # past the budget: read back from disk
    images = [png_bytes(n, size=4 + n % 5) for n in range(40)]
    client = await _receive_app(aiohttp_client, tmp_path)
    form = FormData()
    for n, data in enumerate(images):
        form.add_field("images", data, filename=f"{n}.png")
    body = await (await client.post("/", data=form)).json()
    expected = [hashlib.sha256(data).hexdigest() for data in images]
    assert list(body["on_disk"].values()) == expected
    assert [f["sha256"] for f in body["files"]] == expected
    kept = [f["kept"] for f in body["files"]]
    assert kept[0] and not kept[-1]


async def test_a_part_past_the_file_limit_leaves_no_write_running(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path / "data", SWEEPLAB_MAX_FILE_BYTES=str(1 << 20))
    temp_dir = tmp_path / "upload"
    temp_dir.mkdir()

    async def handler(request: web.Request) -> web.Response:
        try:
            await receive_files(request, settings, temp_dir, "images")
        except Exception as error:  # the handler removes the folder right after
            names = sorted(p.name for p in temp_dir.iterdir())
            return web.json_response({"error": type(error).__name__, "files": names})
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/", handler)
    client = await aiohttp_client(app)
    form = FormData()
    form.add_field("images", os.urandom(3 << 20), filename="big.png")
    body = await (await client.post("/", data=form)).json()
    assert body == {"error": "TooLarge", "files": ["part-000000"]}


def test_archive_members_are_hashed_as_they_are_unpacked(tmp_path):
    members = {f"{n % 2}/{n}.png": png_bytes(n, size=6 + n) for n in range(5)}
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    out = tmp_path / "out"
    out.mkdir()
    seen = []
    found, rejected = unpack(archive, out, ArchiveLimits(100, 1 << 20, 1 << 20), None,
                             lambda member: seen.append(member) or member.name != "1/3.png")
    assert rejected == []
    assert [m.data for m in seen] == list(members.values())  # in memory while visited
    assert [m.sha256 for m in found] == [hashlib.sha256(d).hexdigest()
                                         for d in members.values()]
    assert all(m.data is None for m in found)  # ... and let go of after
    # the member the check refused was never written; the others were, each once
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
    assert on_disk == {m.path.name: m.sha256 for m in found if m.name != "1/3.png"}


def test_a_member_larger_than_memory_keeps_is_streamed_to_disk(tmp_path, monkeypatch):
    import service.ingest.archives as archives

    monkeypatch.setattr(archives, "CHUNK", 1000)
    monkeypatch.setattr(archives, "KEEP_BYTES", 2500)
    data = os.urandom(10_000)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("1/big.png", data)
        handle.writestr("1/small.png", data[:100])
    out = tmp_path / "out"
    out.mkdir()
    seen = []
    found, _ = unpack(archive, out, ArchiveLimits(100, 1 << 20, 1 << 20), None,
                      lambda member: seen.append(member) or True)
    assert [m.data for m in seen] == [None, data[:100]]
    assert [p.read_bytes() for p in sorted(out.iterdir())] == [data, data[:100]]
    assert found[0].sha256 == hashlib.sha256(data).hexdigest()

