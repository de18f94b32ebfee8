"""
A script started in a box of its own (see :mod:`.contain`): stopping it empties the box too.

:class:`BoxedChild` is a :class:`.process.ChildProcess` that also owns its trial's box: its
start wraps the command so that the script joins the box before its ``exec``, and its stop,
once the process group is gone, kills what is left in the box (processes that left the
group), waits for it, keeps what the box saw (:attr:`BoxedChild.usage`) and removes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

import anyio

from .contain import Box, BoxUsage, Containment, check_executable
from .process import ChildProcess, Exit

__all__ = ["BoxedChild", "Launch"]


class Launch(NamedTuple):
    """A script to start: its command, where, with which whole environment, and its open logs."""

    argv: Sequence[str]
    cwd: Path | None
    env: Mapping[str, str]
    logs: tuple[BinaryIO, BinaryIO]
    """Its stdout and stderr files, closed once the child has its own copies."""


class _Settings(Protocol):
    """What a boxed start reads of the supervision's settings."""

    @property
    def child_watcher(self) -> bool: ...

    @property
    def containment(self) -> Containment: ...


class BoxedChild(ChildProcess):
    """A started script and its box; :attr:`usage` is what the box saw, once stopped."""

    box: Box | None = None
    usage: BoxUsage | None = None

    @classmethod
    async def start_boxed(
        cls, launch: Launch, settings: _Settings, spawners: anyio.CapacityLimiter | None = None
    ) -> BoxedChild:
        """
        Start ``launch`` as :meth:`ChildProcess.start` does, in a new box of ``settings``, with
        its logs (closed here once the child has its own copies).

        Raises:
            OSError: the program does not exist or cannot be executed (the box is removed).
        """
        argv, cwd, env, (out, err) = launch
        with out as stdout, err as stderr:
            await settings.containment.sweep()
            box = settings.containment.box()
            try:
                boxed, boxed_env = box.wrap(argv, env)
                if boxed[:1] != list(argv[:1]):  # behind a wrapper: its exec's error, now
                    check_executable(argv[0], cwd, env)
                child = await cls.start(
                    boxed,
                    cwd=cwd,
                    env=boxed_env,
                    stdout=stdout,
                    stderr=stderr,
                    child_watcher=settings.child_watcher,
                    spawners=spawners,
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await box.close()
                raise
        assert isinstance(child, BoxedChild)  # start makes an instance of cls
        box.started(child.pid)
        child.box = box
        return child

    def traces(self) -> tuple[str, ...]:
        """What the watchdog needs to empty the box (see :meth:`.contain.Box.traces`)."""
        return () if self.box is None else self.box.traces()

    def kill_now(self) -> None:
        """SIGKILL the whole group, and what is in the box, at once (a second Ctrl-C)."""
        super().kill_now()
        if self.box is not None:
            self.box.kill_now()

    async def stop(self, grace: float) -> Exit | None:
        """Stop the group as :meth:`ChildProcess.stop` does, then empty and remove the box."""
        exit_ = await super().stop(grace)
        if self.box is not None:
            box, self.box = self.box, None
            with anyio.CancelScope(shield=True):
                self.usage = await box.close()
        return exit_
