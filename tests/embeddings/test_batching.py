import asyncio

import pytest

from app.embeddings.batching import MicroBatcher


class Model:
    """Upper-cases texts; records each call; can hold a call open until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_on in texts:
            raise ValueError(f"cannot embed {self.fail_on}")
        return [text.upper() for text in texts]

    async def hold_next_call(self) -> None:
        """Call before submitting: the next call starts, then waits for `release()`."""
        self.gate = asyncio.Event()
        self.entered.clear()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()
        self.gate = None


async def test_lone_request_is_one_call() -> None:
    model = Model()
    batcher = MicroBatcher(model, batch_size=8)
    batcher.start()
    async with asyncio.timeout(5):
        assert await batcher.submit(["a"]) == ["A"]
    await batcher.stop(RuntimeError("stopped"))
    assert model.calls == [["a"]]


async def test_requests_arriving_during_a_call_form_the_next_batch() -> None:
    model = Model()
    batcher = MicroBatcher(model, batch_size=8)
    batcher.start()
    await model.hold_next_call()
    async with asyncio.timeout(5):
        first = asyncio.create_task(batcher.submit(["a"]))
        await model.entered.wait()
        others = [asyncio.create_task(batcher.submit([text])) for text in ("b", "c", "d")]
        await asyncio.sleep(0)
        model.release()
        assert await first == ["A"]
        assert [await task for task in others] == [["B"], ["C"], ["D"]]
    await batcher.stop(RuntimeError("stopped"))
    assert model.calls == [["a"], ["b", "c", "d"]]


async def test_batches_never_exceed_batch_size_and_keep_order() -> None:
    model = Model()
    batcher = MicroBatcher(model, batch_size=3)
    batcher.start()
    texts = [f"t{i}" for i in range(7)]
    async with asyncio.timeout(5):
        assert await batcher.submit(texts) == [text.upper() for text in texts]
    await batcher.stop(RuntimeError("stopped"))
    assert [len(call) for call in model.calls] == [3, 3, 1]


async def test_duplicate_texts_in_a_batch_are_embedded_once() -> None:
    model = Model()
    batcher = MicroBatcher(model, batch_size=8)
    batcher.start()
    async with asyncio.timeout(5):
        assert await batcher.submit(["x", "y", "x"]) == ["X", "Y", "X"]
    await batcher.stop(RuntimeError("stopped"))
    assert model.calls == [["x", "y"]]


async def test_cancelled_callers_do_not_break_others() -> None:
    model = Model()
    batcher = MicroBatcher(model, batch_size=8)
    batcher.start()
    await model.hold_next_call()
    async with asyncio.timeout(5):
        in_flight = asyncio.create_task(batcher.submit(["a"]))
        neighbour = asyncio.create_task(batcher.submit(["b"]))
        await model.entered.wait()
        queued = asyncio.create_task(batcher.submit(["c"]))
        survivor = asyncio.create_task(batcher.submit(["d"]))
        await asyncio.sleep(0)
        in_flight.cancel()
        queued.cancel()
        model.release()
        assert await neighbour == ["B"]
        assert await survivor == ["D"]
    assert in_flight.cancelled()
    assert queued.cancelled()
    await batcher.stop(RuntimeError("stopped"))
    assert model.calls == [["a", "b"], ["d"]]


async def test_an_error_reaches_exactly_the_callers_of_its_batch() -> None:
    model = Model(fail_on="bad")
    batcher = MicroBatcher(model, batch_size=8)
    batcher.start()
    await model.hold_next_call()
    async with asyncio.timeout(5):
        before = asyncio.create_task(batcher.submit(["ok"]))
        await model.entered.wait()
        failing = [asyncio.create_task(batcher.submit([text])) for text in ("bad", "x")]
        await asyncio.sleep(0)
        model.release()
        assert await before == ["OK"]
        for task in failing:
            with pytest.raises(ValueError, match="cannot embed bad"):
                await task
        assert await batcher.submit(["after"]) == ["AFTER"]
    await batcher.stop(RuntimeError("stopped"))
    assert model.calls == [["ok"], ["bad", "x"], ["after"]]


async def test_stop_fails_waiting_callers_and_start_works_again() -> None:
    model = Model()
    batcher = MicroBatcher(model, batch_size=8)
    for _ in range(3):
        batcher.start()
        batcher.start()
        async with asyncio.timeout(5):
            assert await batcher.submit(["a"]) == ["A"]
            await model.hold_next_call()
            waiting = asyncio.create_task(batcher.submit(["b"]))
            await model.entered.wait()
            await batcher.stop(LookupError("shutting down"))
            with pytest.raises(LookupError, match="shutting down"):
                await waiting
        model.gate = None
        with pytest.raises(RuntimeError, match="start"):
            await batcher.submit(["c"])
