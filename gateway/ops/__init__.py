"""The operators' console: a live web page, JSON routes, `/metrics`, the `paygate ops`
command line, and dual control over the actions that change a payment.

Entry points for the gateway:

- `install(gw)`: the console as a gateway extension (`"gateway.ops"` in
  `gateway.app.EXTENSIONS`): its routes are added with the others, and the intake's
  review hook (`gw.review`) is set to the amount review and the screening when no other
  hook is set.
- `gateway.ops.web.add_routes(app, gw)`: every `/ops/...` route, `/metrics` and the page.
- `gateway.ops.cli.ops_command(argv)`: `paygate ops ...` against a running gateway.
- `gateway.ops.review.review_reason(transfer, settings)`,
  `gateway.ops.review.screen(transfer, settings)` and `hold_reason` (both): why a new
  payment must wait in `held` for a second person.
- `gateway.ops.schema.install(gw)`: the console's own tables (also run on first use).

Operators and their levels follow DOMAIN.md §5; docs/operations.md describes the
page, the actions, who may approve them, the command line and the metric names.
"""

from __future__ import annotations

import asyncio
from typing import Any


class OpsExtension:
    def __init__(self, gw: Any) -> None:
        from gateway.ops.screening_watch import ScreeningWatch
        self.gw = gw
        # The screening file watched while the gateway runs (/health shows its state).
        gw.screening_watch = self.watch = ScreeningWatch(gw)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        settings = self.gw.settings
        # Before the list is read: the time it is taken, shown in `ops status`, is the
        # gateway's (the watch gives it for a file set later).
        self.watch.give_clock()
        if getattr(settings, "screening_file", ""):
            # The list taken is copied to the data folder; a file broken at this start
            # is replaced by the copy of its last good list (gateway.ops.review).
            from gateway.ops.review import keep_last_good
            await asyncio.get_running_loop().run_in_executor(
                None, keep_last_good, settings.screening_file, settings.data_path)
        await self.watch.check()  # the list read now: a later bad change keeps it
        self._task = asyncio.create_task(self.watch.run(), name="screening_watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def add_routes(self, app: Any) -> None:
        from gateway.ops.web import add_routes
        add_routes(app, self.gw)


def install(gw: Any) -> OpsExtension:
    """The console as an extension of `gw` (see gateway.app.EXTENSIONS)."""
    from gateway.ops.review import hold_reason
    if getattr(gw, "review", None) is None:
        gw.review = hold_reason
    return OpsExtension(gw)
