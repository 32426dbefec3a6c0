"""The worker's consumer and app in exactly-once mode: the transacted topics' offsets left to the transactions
(stream_app/delivery/transactions.py), and their partitions claimed before the committed offsets are read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, cast

from faust.types import TP

from stream_app.faust_patches.consumer import TaggerApp, TaggerConsumer

if TYPE_CHECKING:
    from stream_app.delivery.transactions import PartitionTransactions


class TransactedConsumer(TaggerConsumer):
    """Faust's Kafka consumer leaving the transacted topics' offsets to the transactions, and claiming their
    partitions before it seeks to the committed offsets.

    Faust resumes a rebalanced stream's partitions and then seeks them to the committed offsets. A record fetched
    in between, from wherever the fetcher was, must not reach a transaction, which would commit the offset after
    it. So transacted partitions stay paused until the seek is done (and, as in every :class:`TaggerConsumer`,
    what is fetched after the seek waits until the flow resumes).
    """

    _held: set[TP] = set()  # noqa: RUF012 - replaced, never mutated

    def resume_partitions(self, partitions: Iterable[TP]) -> None:
        """Resume ``partitions``, but hold the transacted ones until the next :meth:`perform_seek`."""
        owners = cast(TransactedApp, self.app).owners
        partitions = set(partitions)
        held = {tp for tp in partitions if tp.topic in owners}
        self._held = self._held | held
        if partitions - held:
            super().resume_partitions(partitions - held)

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        owners = cast(TransactedApp, self.app).owners
        plain = {tp: offset for tp, offset in offsets.items() if tp.topic not in owners}
        return await super()._commit(plain) if plain else True

    async def before_seek(self) -> None:
        """Claim the assigned transacted partitions: their committed offsets are read next."""
        await cast(TransactedApp, self.app).claim(self.assignment())

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset (claiming first, :meth:`before_seek`), then resume the
        held ones."""
        await super().perform_seek()
        assignment = self.assignment()
        held, self._held = self._held, set()
        if held & assignment:
            super().resume_partitions(held & assignment)


class TransactedApp(TaggerApp):
    """A Faust app whose consumer is a :class:`TransactedConsumer`; ``owners`` maps each transacted topic to the
    producers of the agent that consumes it."""

    consumer_class = TransactedConsumer
    owners: dict[str, PartitionTransactions]

    async def claim(self, assigned: Iterable[TP]) -> None:
        """Make each stage own exactly its assigned partitions."""
        assigned = list(assigned)
        for topic, owner in self.owners.items():
            await owner.claim(tp for tp in assigned if tp.topic == topic)

    async def release(self, revoked: Iterable[TP]) -> None:
        """Let go of the revoked transacted partitions' producers (connected to ``on_partitions_revoked``)."""
        revoked = list(revoked)
        for topic, owner in self.owners.items():
            await owner.release(tp for tp in revoked if tp.topic == topic)

    async def on_shutdown(self) -> None:
        """Stop the stages' producers once the agents have stopped (Faust's ``on_before_shutdown`` comes before
        that), so that no agent commits through a producer being stopped, or starts another while the worker stops."""
        await super().on_shutdown()
        for owner in self.owners.values():
            await owner.stop()
