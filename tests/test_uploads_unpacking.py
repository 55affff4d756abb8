"""An archive part is unpacked while it arrives, in a thread, and never written whole."""

import asyncio
import io
import zipfile
from pathlib import Path

from aiohttp import web

from service.ingest.receive import ReceivedFile
from service.ingest.unpacking import ChunkFeed, StreamedUnpack
from service.ingest.uploads import check_uploads, receive_files, unpacker
from tests.api_support import make_model
from tests.conftest import make_settings
from tests.helpers import png_bytes, tar_gz_bytes, zip_bytes

BOUNDARY = "sweeplab-test-boundary"


def _body(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart body by hand, so a test can send it in pieces of its choosing."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").encode()
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def _unpacking_app(aiohttp_client, tmp_path: Path, outcome: dict):
    """A route that receives and checks an upload as the API does; `outcome` tells what the
    temporary folder held after receiving, and whether the unpacking had ended by then."""
    settings = make_settings(tmp_path / "data")
    temp_dir = tmp_path / "upload"
    temp_dir.mkdir()
    real_unpacker = unpacker(settings, temp_dir)

    def watched(upload, kind, chunks):
        try:
            return real_unpacker(upload, kind, chunks)
        finally:
            outcome["unpacking_ended"] = True

    async def handler(request: web.Request) -> web.Response:
        try:
            received = await receive_files(request, settings, temp_dir, "images", labels=True,
                                           unpacker=watched)
        except BaseException as error:  # a cut request may cancel the handler
            outcome["error"] = type(error).__name__
            outcome["ended_before_error"] = outcome.get("unpacking_ended", False)
            if isinstance(error, asyncio.CancelledError):
                raise
            return web.json_response({"error": outcome["error"]}, status=400)
        outcome["files"] = sorted(p.name for p in temp_dir.iterdir())
        found, refused = await asyncio.to_thread(check_uploads, settings, received, temp_dir)
        return web.json_response({"found": [c.name for c in found],
                                  "labels": [c.label for c in found],
                                  "refused": [r.name for r in refused],
                                  "streamed": [f.unpacked is not None for f in received.files]})

    app = web.Application()
    app.router.add_post("/", handler)
    return await aiohttp_client(app), temp_dir


async def test_members_are_on_disk_before_the_archive_has_arrived(aiohttp_client, tmp_path):
    """The first half of the request is sent, and the first members appear unpacked while
    the rest is still to come; the archive itself is never written."""
    archive = zip_bytes({f"{n % 2}/{n}.png": png_bytes(n, size=200) for n in range(8)})
    body = _body([("label", None, b"loose"), ("images", "train.zip", archive)])
    outcome: dict = {}
    client, temp_dir = await _unpacking_app(aiohttp_client, tmp_path, outcome)
    half = len(body) // 2
    first_half_taken = asyncio.Event()

    async def pieces():
        for at in range(0, half, 128):  # small pieces: the multipart reader holds one back
            yield body[at:min(at + 128, half)]
            await asyncio.sleep(0.01)
        for _ in range(200):  # wait (at most 10 s) for members unpacked from the first half
            if list(temp_dir.rglob("member-*")):
                first_half_taken.set()
                break
            await asyncio.sleep(0.05)
        yield body[half:]

    response = await client.post("/", data=pieces(), headers=HEADERS)
    answer = await response.json()
    assert first_half_taken.is_set()
    assert answer["found"] == [f"train.zip:{n % 2}/{n}.png" for n in range(8)]
    assert answer["labels"] == [str(n % 2) for n in range(8)]
    assert outcome["files"] == ["part-000000-unpacked"]  # no file of the archive's own


async def test_a_tar_gz_streams_and_a_zip_with_a_prefix_is_read_from_its_file(
        aiohttp_client, tmp_path):
    images = {"3/a.png": png_bytes(1), "4/b.png": png_bytes(2)}
    prefixed = b"#!/bin/sh\nexit 0\n" + zip_bytes(images)  # a self-extracting archive, say
    client, _ = await _unpacking_app(aiohttp_client, tmp_path, {})
    response = await client.post("/", data=_body([("images", "t.tgz", tar_gz_bytes(images)),
                                                   ("images", "sfx.zip", prefixed)]),
                                 headers=HEADERS)
    answer = await response.json()
    assert answer["labels"] == ["3", "4", "3", "4"]
    assert answer["streamed"] == [True, False]


async def test_a_request_cut_mid_archive_ends_the_unpacking_thread(aiohttp_client, tmp_path):
    archive = zip_bytes({f"1/{n}.png": png_bytes(n, size=300) for n in range(6)})
    body = _body([("images", "train.zip", archive)])
    outcome: dict = {}
    client, temp_dir = await _unpacking_app(aiohttp_client, tmp_path, outcome)
    # A client that sends half its body, a piece at a time, and hangs up mid-archive
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write((f"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: {HEADERS['Content-Type']}"
                  f"\r\nContent-Length: {len(body)}\r\n\r\n").encode())
    for at in range(0, len(body) // 2, 128):
        writer.write(body[at:min(at + 128, len(body) // 2)])
        await writer.drain()
        await asyncio.sleep(0.01)
    for _ in range(100):
        if list(temp_dir.rglob("member-*")):  # the unpacking is under way
            break
        await asyncio.sleep(0.05)
    writer.close()
    for _ in range(100):
        if "error" in outcome:
            break
        await asyncio.sleep(0.05)
    assert outcome.get("error") is not None
    # The handler got its error only once the thread had stopped: it may remove the folder.
    assert outcome["ended_before_error"] is True


def test_the_feed_holds_the_loop_back_and_lets_go_when_the_thread_stops():
    async def scenario():
        feed = ChunkFeed(asyncio.get_running_loop(), limit=10)
        taken: list[bytes] = []
        await feed.put(b"12345")  # under the limit: no wait
        blocked = asyncio.ensure_future(feed.put(b"6789012345"))
        await asyncio.sleep(0.05)
        assert not blocked.done()  # 15 bytes wait: the loop is held back

        def take_two() -> None:
            iterator = iter(feed)
            taken.extend([next(iterator), next(iterator)])
            feed.stop_taking()

        await asyncio.to_thread(take_two)
        await asyncio.wait_for(blocked, 5)
        await asyncio.wait_for(feed.put(b"dropped"), 5)  # the thread stopped: nothing waits
        assert taken == [b"12345", b"6789012345"]

    asyncio.run(scenario())


async def test_the_api_keeps_a_streamed_archive_and_refuses_its_links(client, db, settings):
    """Through the real route: a zip whose index marks a member as a link (its bytes a good
    PNG) keeps the others, refuses that one, and leaves nothing in the temporary folder."""
    link = zipfile.ZipInfo("2/link.png")
    link.external_attr = 0o120777 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr("1/a.png", png_bytes(1))
        handle.writestr(link, png_bytes(2))
    model_id = await make_model(client)
    response = await client.post(f"/api/v1/models/{model_id}/images",
                                 data=_body([("images", "t.zip", buffer.getvalue())]),
                                 headers=HEADERS)
    body = await response.json()
    assert response.status == 201, body
    assert (body["added"], body["labels"]) == (1, {"1": 1})
    assert body["rejected"] == [{"name": "t.zip:2/link.png",
                                 "reason": "links and special files are refused"}]
    assert list(settings.tmp_dir.iterdir()) == []


async def test_a_bad_label_before_a_streamed_archive_is_422(client, db, settings):
    model_id = await make_model(client)
    archive = zip_bytes({"a.png": png_bytes(1)})
    response = await client.post(
        f"/api/v1/models/{model_id}/images",
        data=_body([("label", None, b"../etc"), ("images", "t.zip", archive)]),
        headers=HEADERS)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["field"] == "label"
    assert list(settings.tmp_dir.iterdir()) == []


def test_archives_arriving_slowly_leave_the_default_thread_pool_free():
    """Each unpacking has a thread of its own while its part arrives: many slow uploads at
    once do not take the default pool's threads, which aiofiles and /health's probe use."""
    async def scenario():
        loop = asyncio.get_running_loop()

        def unpack(upload, kind, chunks):
            return sum(len(chunk) for chunk in chunks)

        slow = [StreamedUnpack(unpack, None, "zip") for _ in range(40)]  # none has ended
        try:
            for unpacking in slow:
                await unpacking.put([b"PK\x03\x04"])
            free = loop.run_in_executor(None, lambda: "free")
            assert await asyncio.wait_for(free, 5) == "free"
        finally:  # a failure must not leave threads waiting for chunks that never come
            for unpacking in slow:
                unpacking.feed.close()
        assert [await unpacking.job for unpacking in slow] == [4] * 40

    asyncio.run(scenario())


def test_a_link_only_the_index_shows_is_refused_once_with_the_links_reason(tmp_path):
    """A real link's bytes are its target's path: the check refuses them as no image while
    the zip streams, then the index says it is a link. One refusal, the link's."""
    link = zipfile.ZipInfo("2/link.png")
    link.external_attr = 0o120777 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr("1/a.png", png_bytes(1))
        handle.writestr(link, b"/etc/passwd")
    settings = make_settings(tmp_path / "data")
    upload = ReceivedFile(tmp_path / "part-000000", "t.zip")
    found, refused = unpacker(settings, tmp_path)(upload, "zip", [buffer.getvalue()])
    assert [candidate.name for candidate in found] == ["t.zip:1/a.png"]
    assert [(r.name, r.reason) for r in refused] == [
        ("t.zip:2/link.png", "links and special files are refused")]
