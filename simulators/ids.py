"""Message identifiers the simulator issues, from sequences kept in its database.

- NPC header MesgID: "HVPD" (HVPS) or "BEPA" (BEPS) and 16 digits, the send date and an
  8-digit sequence (SPEC.md a.1, observed values); the NPC repeats it as MesgRefID.
- XML MsgId of NPC and peer messages: the send date and an 8-digit sequence, 16 digits
  as in the samples.
- Bank header MesgID of a peer bank: the send date and a 12-digit sequence, 20 digits as
  bank-sent samples show.

Sequences never restart, so ids stay unique across days and restarts; a wrap after 10^8
messages in one installation is far beyond any simulated run.
"""

from __future__ import annotations

from datetime import date, datetime

from gateway.clock import Clock
from simulators.store import Store

_NPC_PREFIX = {"BEPS": "BEPA"}  # every other system's notices use the HVPS prefix


class Ids:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._date: date | None = None
        self._date_text = ""

    def _day(self, now: datetime | None) -> str:
        """The date of `now` (the clock's time when None) as yyyyMMdd, formatted once a
        day (ids are issued several times per message). A caller that read the clock for
        the message the id is for passes that instant: the id's date is then the one its
        header or group header shows, and the clock is read once."""
        today = (now or self.clock.now()).date()
        if today != self._date:
            self._date, self._date_text = today, today.strftime("%Y%m%d")
        return self._date_text

    def npc_mesg_id(self, system: str, now: datetime | None = None) -> str:
        seq = self.store.add("seq:npc_header") % 10**8
        return f"{_NPC_PREFIX.get(system, 'HVPD')}{self._day(now)}{seq:08d}"

    def xml_msg_id(self, owner: str = "0000", now: datetime | None = None) -> str:
        seq = self.store.add(f"seq:xml:{owner}") % 10**8
        return f"{self._day(now)}{seq:08d}"

    def bank_mesg_id(self, code: str, now: datetime | None = None) -> str:
        seq = self.store.add(f"seq:header:{code}") % 10**12
        return f"{self._day(now)}{seq:012d}"


def send_date_time(now: datetime) -> tuple[str, str]:
    """A header's SendDate and SendTime for `now` (yyyyMMdd, HHmmss): what strftime writes,
    without the time-zone look-ups it makes on an aware datetime (about four times the
    cost, for several headers a payment)."""
    return (f"{now.year:04d}{now.month:02d}{now.day:02d}",
            f"{now.hour:02d}{now.minute:02d}{now.second:02d}")


def iso_time(now: datetime) -> str:
    """`now` as a group header's CreDtTm (gateway.messages.common.iso_datetime), written
    without strftime's time-zone look-ups."""
    return (f"{now.year:04d}-{now.month:02d}-{now.day:02d}T"
            f"{now.hour:02d}:{now.minute:02d}:{now.second:02d}")
