"""Detection in a process of its own, beside the API server's.

The encoder, the classifiers and FAISS hold Python's GIL for part of every screen, and so does
the API server's event loop for every request it parses, renders and streams. In one process
they wait for each other: measured here, a batch of 32 screens took 83 ms alone and 321 ms
beside one busy Python thread. In a child process detection has its own GIL; the server keeps
only a pipe to it.

The child holds the whole guard (store and detector) and catches up with the store's write
generation before every screen, as the in-process guard did, so a registration committed by
any replica is enforced on the next request. It ends when the server does: at the server's
exit, or when its pipe closes because the server was killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from typing import Any

from vllm.exceptions import RetryableRequestError

logger = logging.getLogger("guard_server")

START_TIMEOUT_S = 300
# A call the child has not answered by then has hung: the child is replaced and the call
# fails closed. Generous: a screen also trains newly registered targets' classifiers.
CALL_TIMEOUT_S = 60.0
# The child's title in `ps` and /proc/PID/cmdline, beside vLLM's "VLLM::EngineCore".
TITLE = "guard::detection"
# What the server may ask of the child's guard.
OPS = frozenset({"screen_many", "sync", "has_targets", "begun", "completing"})


class DetectionError(RetryableRequestError):
    """Detection failed in the child process: the request it screened fails closed, with a
    503 the client may retry."""


def build_guard(db: str, embedding_model: str | None, encoder_backend: str) -> Any:
    """The guard the child serves: the registry's store and a detector on the encoder."""
    from classifiers.detector import Detector
    from guard_server.guard import Guard
    from guard_server.models import load_encoder
    from guard_server.store import open_store

    encoder = load_encoder(embedding_model, encoder_backend)
    logger.info("embedding model %s on %s", embedding_model or "(default)", encoder.backend)
    return Guard(open_store(db), Detector(encoder))


class DetectionProcess:
    """`screen_many`, `sync` and `has_targets` of a guard built by `factory(*args)` in a
    child process. Calls are serialised over one pipe. A child that died, or did not answer
    a call within `call_timeout_s`, is started again on the next call; the call that found
    it dead or hung fails (closed)."""

    def __init__(
        self, factory: Callable[..., Any], *args: Any, call_timeout_s: float = CALL_TIMEOUT_S
    ):
        self._factory = factory
        self._args = args
        self.call_timeout_s = call_timeout_s
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        with self._lock:
            self._start()

    def screen_many(self, conversations: list[list[str]]) -> list[Any]:
        return self._call("screen_many", conversations)

    def sync(self) -> None:
        self._call("sync")

    def has_targets(self) -> bool:
        return self._call("has_targets")

    def begun(self, context: str, candidates: list[str]) -> list[bool]:
        return self._call("begun", context, candidates)

    def completing(self, items: list[tuple[str, list[str]]]) -> list[list[bool]]:
        return self._call("completing", items)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _call(self, op: str, *args: Any) -> Any:
        assert op in OPS, op
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._stop()
                self._start()
            try:
                self._conn.send((op, args))
                if not self._conn.poll(self.call_timeout_s):
                    self._stop()  # hung: the next call starts a new one
                    raise DetectionError(f"the detection process did not answer {op} in time")
                ok, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._stop()
                raise DetectionError(f"the detection process ended during {op}") from exc
        if not ok:
            raise DetectionError(value)
        return value

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve,
            args=(child, self._factory, self._args),
            name="guard-detection",
            daemon=True,  # terminated at the server's exit
        )
        self._proc.start()
        child.close()  # the child's end lives in the child only: its exit closes the pipe
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self._stop()
            raise DetectionError("the detection process did not start")
        try:
            ok, value = parent.recv()
        except EOFError as exc:
            self._stop()
            raise DetectionError("the detection process exited while starting") from exc
        if not ok:
            self._stop()
            raise DetectionError(f"the detection process could not start: {value}")
        logger.info("detection process %d ready", self._proc.pid)

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._proc = self._conn = None


def is_detection_process(process: Any) -> bool:
    """Whether a psutil process is a server's detection process."""
    try:
        return process.cmdline()[:1] == [TITLE]
    except Exception:  # gone, or not ours to read
        return False


def _serve(conn: Any, factory: Callable[..., Any], args: tuple) -> None:
    """The child: build the guard, answer calls until the pipe closes."""
    import setproctitle

    setproctitle.setproctitle(TITLE)
    # Ctrl-C in a terminal reaches the whole process group; the server decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        guard = factory(*args)
        guard.sync()
    except Exception as exc:
        conn.send((False, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((True, None))
    while True:
        try:
            op, call_args = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        try:
            if op not in OPS:
                raise ValueError(f"unknown detection call {op!r}")
            reply = (True, getattr(guard, op)(*call_args))
        except Exception as exc:  # reported to the caller; the child keeps serving
            logger.exception("detection %s failed", op)
            reply = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
