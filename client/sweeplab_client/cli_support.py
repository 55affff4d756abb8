"""What every command shares: the group's state (profile, server) and the client it makes."""

from __future__ import annotations

import click

from sweeplab_client.client import Client


class State:
    """What the group's options chose; the client made when a command first needs it."""

    def __init__(self, profile: str | None, url: str | None) -> None:
        self.profile = profile
        self.url = url
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(url=self.url, profile=self.profile)
        return self._client


pass_state = click.make_pass_decorator(State)
