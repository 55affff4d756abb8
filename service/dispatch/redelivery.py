"""What the broker holds for our queues, as the reconciler needs to know it.

Dramatiq moves a message whose actor kept raising past its retries to its queue's dead-letter
queue (`sweeplab_train.XQ`, `sweeplab_aggregate.XQ`), where nothing will ever deliver it. The
reconciler takes those back out (with the last error the actor raised), and asks whether
anything at all is waiting in the train queue before it re-sends a queued run that seems to
have lost its message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name

from service.dispatch.broker import AGGREGATE_ACTOR, AGGREGATE_QUEUE, TRAIN_ACTOR, TRAIN_QUEUE

MAX_TAKEN_PER_PASS = 200
MAX_ERROR_CHARS = 400
ACTOR_OF_QUEUE = {TRAIN_QUEUE: TRAIN_ACTOR, AGGREGATE_QUEUE: AGGREGATE_ACTOR}


@dataclass(frozen=True)
class DeadLetter:
    subject_id: int  # the message's argument: a run's id (train), an experiment's (aggregate)
    last_error: str


def _last_error(message: dramatiq.Message | MessageProxy) -> str:
    """The exception a traceback ends with, its continuation lines included (database
    drivers' messages run over several lines)."""
    lines = str(message.options.get("traceback", "")).rstrip().splitlines()
    starts = [number for number, line in enumerate(lines)
              if line[:1].strip() and not line.startswith(("Traceback", "During", "The above"))]
    if not starts:
        return "no error recorded"
    text = " ".join(line.strip() for line in lines[starts[-1]:] if line.strip())
    return text[:MAX_ERROR_CHARS]


def _dead_letter(queue: str, message: dramatiq.Message | MessageProxy) -> DeadLetter | None:
    if message.actor_name != ACTOR_OF_QUEUE[queue] or not message.args:
        return None
    return DeadLetter(int(message.args[0]), _last_error(message))


def take_dead_letters(broker: dramatiq.Broker, queue: str,
                      handle: Callable[[DeadLetter], None]) -> int:
    """Hand every dead-lettered message of this queue (train or aggregate) to `handle`, and
    drop it once handled (a message whose handling raised stays for the next pass). Returns
    how many were taken."""
    if isinstance(broker, StubBroker):
        return _take_from_stub(broker, queue, handle)
    rabbitmq = _rabbitmq(broker)
    rabbitmq.declare_queue(queue, ensure=True)
    channel = rabbitmq.channel
    taken = 0
    while taken < MAX_TAKEN_PER_PASS:
        method, _, body = channel.basic_get(queue=xq_name(queue), auto_ack=False)
        if method is None:
            break
        letter = _dead_letter(queue, dramatiq.Message.decode(body))
        try:
            if letter is not None:
                handle(letter)
        except BaseException:
            channel.basic_nack(method.delivery_tag, requeue=True)
            raise
        channel.basic_ack(method.delivery_tag)
        taken += 1
    return taken


def _take_from_stub(broker: StubBroker, queue: str,
                    handle: Callable[[DeadLetter], None]) -> int:
    letters = broker.dead_letters_by_queue[queue]
    taken = 0
    while letters:
        letter = _dead_letter(queue, letters[0])
        if letter is not None:
            handle(letter)
        letters.pop(0)
        taken += 1
    return taken


def train_queue_is_empty(broker: dramatiq.Broker) -> bool:
    """Nothing ready in the train queue nor its delay queue (messages a worker holds, being
    run or waiting for a retry, are not counted: re-sending one of those costs a look)."""
    if isinstance(broker, StubBroker):
        return all(broker.queues[name].qsize() == 0
                   for name in (TRAIN_QUEUE, dq_name(TRAIN_QUEUE)) if name in broker.queues)
    ready, delayed, _ = _rabbitmq(broker).get_queue_message_counts(TRAIN_QUEUE)
    return ready == 0 and delayed == 0


def _rabbitmq(broker: dramatiq.Broker) -> RabbitmqBroker:
    """The broker as the one kind besides the stub that `make_broker` makes, whose queues
    this module reads directly."""
    if not isinstance(broker, RabbitmqBroker):
        raise TypeError(f"a RabbitMQ or stub broker is needed, not {type(broker).__name__}")
    return broker
