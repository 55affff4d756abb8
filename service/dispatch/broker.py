"""The Dramatiq broker for a deployment, and how the API sends messages through it.

Messages carry ids only; the database is the truth. The API never imports the actors: it sends
messages by queue and actor name, so it does not need the worker's code or its side effects.
"""

from __future__ import annotations

import logging

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker

TRAIN_QUEUE = "sweeplab_train"
AGGREGATE_QUEUE = "sweeplab_aggregate"
TRAIN_ACTOR = "train"
AGGREGATE_ACTOR = "aggregate"
log = logging.getLogger("sweeplab.broker")
# Dramatiq's own time limit sits above the run's, which the worker enforces on the child itself.
TIME_LIMIT_MARGIN_S = 120


class BrokerUnavailable(Exception):
    """The message could not be handed to the broker."""


def make_broker(url: str) -> dramatiq.Broker:
    """RabbitMQ for an `amqp://` URL (vhost included); `stub://` is in-memory, for tests."""
    if url.startswith("stub://"):
        broker: dramatiq.Broker = StubBroker()
        broker.emit_after("process_boot")
        for queue in (TRAIN_QUEUE, AGGREGATE_QUEUE):
            broker.declare_queue(queue)
        return broker
    # confirm_delivery: send() returns only once RabbitMQ has taken the message.
    return RabbitmqBroker(url=url, confirm_delivery=True)


def train_time_limit_ms(timeout_s: float) -> int:
    return int((timeout_s + TIME_LIMIT_MARGIN_S) * 1000)


def _enqueue(broker: dramatiq.Broker, message: dramatiq.Message, delay_ms: int | None) -> None:
    try:
        broker.enqueue(message, delay=delay_ms)
    except (dramatiq.errors.BrokerConnectionError, pika.exceptions.AMQPError) as error:
        # The client gets a sentence; the exception's details are for the server's log.
        log.warning("could not send %s to RabbitMQ: %r", message.actor_name, error)
        raise BrokerUnavailable("RabbitMQ is unreachable") from error


def send_train(broker: dramatiq.Broker, run_id: int, timeout_s: float,
               delay_ms: int | None = None) -> None:
    message: dramatiq.Message = dramatiq.Message(
        queue_name=TRAIN_QUEUE, actor_name=TRAIN_ACTOR, args=(run_id,), kwargs={},
        options={"time_limit": train_time_limit_ms(timeout_s)},
    )
    _enqueue(broker, message, delay_ms)


def send_aggregate(broker: dramatiq.Broker, experiment_id: int) -> None:
    message: dramatiq.Message = dramatiq.Message(
        queue_name=AGGREGATE_QUEUE, actor_name=AGGREGATE_ACTOR, args=(experiment_id,),
        kwargs={}, options={},
    )
    _enqueue(broker, message, None)
