"""``POST /rejects/{frame_id}/chat``: a follow-up question about a reject, answered by the
application's chat function; both turns are kept with the reject.

Questions go to the language model one at a time on a thread of its own (``ChatDesk``): a
hanging model holds that thread, never the threads that serve the other pages. A question
gets the reject's page again, with the question kept and a reason, when it is too long (413),
the desk is full (503), the answer is late (504) or the chat function fails (502).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from inspector.web.deps import State, WebState
from inspector.web.forms import read_form
from inspector.web.routers.rejects import load_reject, reject_page

log = logging.getLogger(__name__)

router = APIRouter()

MAX_QUESTION_CHARS = 2000
CHAT_WAITING = 8  # questions waiting for the assistant; more are told to come back


class ChatDesk:
    """The one thread that asks the language model, and the count of questions waiting for it.

    The count is kept on the event loop only, so it needs no lock.

    Example:
        >>> desk = ChatDesk()
        >>> with desk.seat():
        ...     answer = await desk.answer(lambda: "42", timeout_s=5)   # doctest: +SKIP
    """

    def __init__(self, max_waiting: int = CHAT_WAITING) -> None:
        self.max_waiting = max_waiting
        self.waiting = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat")

    @property
    def full(self) -> bool:
        """True when ``max_waiting`` questions already wait; the next is told to come back."""
        return self.waiting >= self.max_waiting

    @contextlib.contextmanager
    def seat(self) -> Iterator[None]:
        """Count one question as waiting for as long as the block runs."""
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1

    async def answer(self, ask: Callable[[], str], timeout_s: float) -> str:
        """``ask()`` on the desk's thread; TimeoutError after ``timeout_s``."""
        future = asyncio.get_running_loop().run_in_executor(self._pool, ask)
        return await asyncio.wait_for(future, timeout_s)

    def close(self) -> None:
        """Stop the thread; questions not yet asked are dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)


async def chat_desk(request: Request) -> ChatDesk:
    """The application's ``ChatDesk`` (async: resolved without a worker thread)."""
    return request.app.state.chat_desk


Desk = Annotated[ChatDesk, Depends(chat_desk)]


def _answer(web: WebState, reject: dict, frame_id: str, question: str) -> str:
    """Ask the chat function, then keep the question and its answer with the reject."""
    history = web.store.chat_history(frame_id)
    text = web.chat_fn(reject, history, question)
    web.store.append_chat(frame_id, "user", question)
    web.store.append_chat(frame_id, "assistant", text)
    return text


async def _again(
    web: WebState, request: Request, reject: dict, status: int, question: str, error: str
) -> Response:
    """The reject's page with the question still in the form and why it was not answered."""
    return await run_in_threadpool(reject_page, web, request, reject, status, question, error)


@router.post("/rejects/{frame_id}/chat")
async def ask(request: Request, frame_id: str, web: State, desk: Desk) -> Response:
    """A follow-up question: answered by ``chat_fn``, both turns kept with the reject."""
    reject = await run_in_threadpool(load_reject, web.store, frame_id)
    if reject is None:
        return web.pages.not_found(request)
    question = (await read_form(request)).get("question", "").strip()
    if not question:
        return RedirectResponse(f"/rejects/{quote(frame_id, safe='')}#chat", 303)
    again = partial(_again, web, request, reject)
    if len(question) > MAX_QUESTION_CHARS:
        too_long = f"Please keep a question under {MAX_QUESTION_CHARS} characters."
        return await again(413, question[:MAX_QUESTION_CHARS], too_long)
    if desk.full:
        busy = "The assistant is busy with other questions. Please try again in a minute."
        return await again(503, question, busy)
    timeout_s = web.settings.chat_timeout_s
    with desk.seat():
        try:
            await desk.answer(partial(_answer, web, reject, frame_id, question), timeout_s)
        except TimeoutError:
            log.warning("chat for %s: no answer within %.0f s", frame_id, timeout_s)
            late = f"The assistant did not answer within {timeout_s:.0f} s. Please try again later."
            return await again(504, question, late)
        except Exception as exc:  # the assistant's failure must not lose the question
            log.exception("chat failed for %s", frame_id)
            failed = f"The assistant could not answer ({type(exc).__name__}). Please try again."
            return await again(502, question, failed)
    return RedirectResponse(f"/rejects/{quote(frame_id, safe='')}#chat-end", 303)
