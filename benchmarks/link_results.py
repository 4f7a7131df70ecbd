"""The gateway's reading of a link POST of the NPC's HVPS results, in process: what
`Gateway.receive_link_many` does on the event loop for each envelope before its store
work (the envelope decoded, its receiver and signature checked, its body read against
its schema and rules by `gateway.app._read_body`), for POSTs of the ccms.990s (our
hvps.111s acknowledged) and ccms.900s (their settlements) that the simulated NPC writes
(simulators.templates, unsigned as it sends them), half of each as they come under
load. It prints the thread CPU an envelope, median and best of the rounds; two
envelopes come in an HVPS payment.

    .venv/bin/python -m benchmarks.link_results [--envelopes 32] [--rounds 9]
        [--posts 200]

Run it for the code before and after a change in turns (a checkout each, PYTHONPATH set
to it): the machine's other work moves single runs by several per cent.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gateway.app import _read_body
from gateway.messages import ccms900, ccms990
from gateway.messages import envelope as env_mod
from gateway.messages.common import GroupHeader, OriginalRef
from gateway.messages.envelope import Header
from gateway.messages.signing import KeyRing
from simulators import templates

BANK, NPC = "999100000019", "0000"
DAY = "20261207"


def _header(mesg_type: str, seq: int) -> Header:
    mesg_id = f"{DAY}{seq:012d}"
    return Header(orig_sender=NPC, orig_sender_sid="HVPS", orig_receiver=BANK,
                  orig_receiver_sid="HVPS", send_date=DAY, send_time="090009",
                  mesg_type=mesg_type, mesg_id=mesg_id, mesg_ref_id=mesg_id, direction="D")


def results(count: int) -> list[bytes]:
    """`count` envelopes, a ccms.990 and a ccms.900 for each payment in turn."""
    out = []
    for n in range(count):
        ours = f"{DAY}{n:012d}"
        if n % 2 == 0:
            body = templates.ack_body(ccms990.CommConf(BANK, DAY, "hvps.111.001.01", ours,
                                                       ours))
            out.append(templates.unsigned_envelope(_header(ccms990.MESSAGE_TYPE, n), body))
            continue
        body = templates.result_body(ccms900.CommonConf(
            header=GroupHeader(f"{DAY}{n:08d}", "2026-12-07T09:00:09", NPC, NPC, BANK, BANK,
                               "HVPS"),
            original=OriginalRef(f"{DAY}{n:08d}", BANK, "hvps.111.001.01"),
            status=ccms900.SETTLED, code="HV0I0000", processed_on="2026-12-07"))
        out.append(templates.unsigned_envelope(_header(ccms900.MESSAGE_TYPE, n), body))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envelopes", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args()
    raws = results(args.envelopes)
    receivers = frozenset([BANK])
    with tempfile.TemporaryDirectory() as keys:
        ring = KeyRing.load(Path(keys), [])

        def post() -> None:
            for raw in raws:
                env = env_mod.decode(raw)
                read = _read_body(env, ring.verify(env, receivers))
                assert read is not None and not isinstance(read, Exception) and read.ok

        for _ in range(20):
            post()
        figures = []
        for _ in range(args.rounds):
            start = time.thread_time()
            for _ in range(args.posts):
                post()
            figures.append((time.thread_time() - start) / args.posts / len(raws) * 1e6)
    print(f"us an envelope: median {statistics.median(figures):.2f} "
          f"best {min(figures):.2f} ({args.envelopes} a POST, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
