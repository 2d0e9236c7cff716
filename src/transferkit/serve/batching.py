"""`MicroBatcher`: images from concurrent requests grouped into one model call.

Requests put their preprocessed pixels on an asyncio queue; one coroutine takes the first waiting
image, gathers more until the batch holds `max_batch` or `max_wait_s` has passed since the first, and
runs the model on the stacked batch in a single worker thread, so the event loop keeps accepting
requests (and filling the next batch) while the model runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

BatchModel = Callable[[np.ndarray], np.ndarray]
"""uint8 pixels (N, C, H, W) -> probabilities (N, classes)."""
BatchObserver = Callable[[int, float, BaseException | None], None]
"""Told each batch's size, model seconds and error (None when it succeeded)."""


@dataclass
class _Pending:
    pixels: np.ndarray
    result: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Runs `model` on batches of images submitted one at a time from any number of coroutines.

    Use as ``async with MicroBatcher(...) as batcher: probabilities = await batcher.submit(pixels)``.
    """

    def __init__(
        self,
        model: BatchModel,
        max_batch: int,
        max_wait_s: float,
        observe: BatchObserver | None = None,
    ) -> None:
        self.model, self.max_batch, self.max_wait_s = model, max_batch, max_wait_s
        self.observe = observe or (lambda size, seconds, error: None)
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        # One thread: batches run one after another, and the model is never entered concurrently.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transferkit-model")
        self.worker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MicroBatcher:
        self.worker = asyncio.create_task(self._run(), name="transferkit-batcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.executor.shutdown(wait=True)

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """The probabilities (classes,) of one image's uint8 pixels (C, H, W)."""
        if self.worker is None or self.worker.done():
            raise RuntimeError("The batcher is not running: use it inside `async with`.")
        pending = _Pending(pixels, asyncio.get_running_loop().create_future())
        await self.queue.put(pending)
        return await pending.result

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            await self._run_batch(batch)

    async def _collect(self) -> list[_Pending]:
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self.queue.empty():  # those already waiting join without a timer
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return [pending for pending in batch if not pending.result.done()]  # callers that went away

    async def _run_batch(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        pixels = np.stack([pending.pixels for pending in batch])
        started = time.perf_counter()
        try:
            probabilities = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.model, pixels
            )
        except Exception as err:  # the model's failure belongs to these callers, not to the batcher
            self.observe(len(batch), time.perf_counter() - started, err)
            for pending in batch:
                if not pending.result.done():
                    pending.result.set_exception(err)
            return
        self.observe(len(batch), time.perf_counter() - started, None)
        for pending, row in zip(batch, probabilities, strict=True):
            if not pending.result.done():
                pending.result.set_result(row)
