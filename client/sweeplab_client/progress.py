"""The upload's progress bar, by bytes and by images, on the terminal's error stream."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from sweeplab_client.models import UploadResult
from sweeplab_client.session import Session
from sweeplab_client.upload import total_size, upload


def upload_with_bar(session: Session, model_id: int, paths: list[str],
                    console: Console | None = None) -> UploadResult:
    """upload(), with one bar: bytes sent, images sent, speed and time left."""
    size, count = total_size(paths)
    console = console or Console(stderr=True)
    with Progress(TextColumn("upload"), BarColumn(), DownloadColumn(),
                  TextColumn("{task.fields[images]}/{task.fields[of]} images"),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("upload", total=size, images=0, of=count)
        sent_images = 0

        def sent(batch_bytes: int, batch_images: int) -> None:
            nonlocal sent_images
            sent_images += batch_images
            bar.update(task, advance=batch_bytes, images=sent_images)

        return upload(session, model_id, paths, on_sent=sent)
