"""Whether RabbitMQ answers, for `/healthz`, without a new connection per check.

Health checks come every few seconds. Opening an AMQP connection for each cost a TCP and AMQP
handshake and a dozen pika log lines; instead one connection is kept and each check exchanges
pending frames on it, which fails at once when the broker has closed it or gone away. Only when
it is down is a new connection tried.
"""

from __future__ import annotations

import threading

import pika
import pika.exceptions

PROBE_TIMEOUT_S = 2


class BrokerProbe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: pika.BlockingConnection | None = None
        # pika's connection belongs to one thread at a time; checks may come from any
        self.lock = threading.Lock()

    def reachable(self) -> bool:
        if self.url.startswith("stub://"):
            return True
        with self.lock:
            # A kept connection may have been closed by a missed heartbeat between checks,
            # with the broker fine: so a failure on it earns one fresh try.
            return self._exchange() or self._exchange()

    def _exchange(self) -> bool:
        try:
            if self.connection is None or not self.connection.is_open:
                self.connection = self._connect()
            self.connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPError, OSError):
            self._forget()
            return False
        return True

    def _connect(self) -> pika.BlockingConnection:
        parameters = pika.URLParameters(self.url)
        parameters.socket_timeout = PROBE_TIMEOUT_S
        parameters.blocked_connection_timeout = PROBE_TIMEOUT_S
        parameters.connection_attempts = 1
        return pika.BlockingConnection(parameters)

    def _forget(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def close(self) -> None:
        with self.lock:
            self._forget()
