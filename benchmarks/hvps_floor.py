"""The least CPU an HVPS payment can cost the gateway on this machine, with this design's
parts each measured bare: what the gateway cannot avoid doing for each payment, whatever
code does it, summed.

    .venv/bin/python -m benchmarks.hvps_floor [--seconds 5]

For each payment the gateway takes one HTTP request and answers it, reads its JSON and
writes the answer's; builds and signs an hvps.111; checks the signature of the NPC's
ccms.900 and reads that message and two ccms.990s against their schemas; and leaves in a
durable database the payment, its hold and its settlement (an entry and two lines each),
its four messages and its idempotency key. The link carries its four envelopes in POSTs of
many (`bench e2e` sees about 16 to 32 a POST), so the link's HTTP is counted at one
request served and one made per 8 payments.

Each part is timed alone, in CPU seconds of the process doing it:
- `http_served`: a bare aiohttp endpoint reading the same JSON body (the e2e benchmark's
  baseline), its server process's CPU per request, driven by the e2e load generator;
- `http_made`: that load generator's own CPU per request (a link POST made);
- `json`: orjson reading the transfer body and writing an answer of the gateway's size;
- `sign` and `verify`: ECDSA P-256 over a 3 KB message (cryptography, as the link does);
- `xml_build`: lxml writing an hvps.111 tree of the sample's size to bytes;
- `xml_read`: lxml parsing and validating a ccms.900 and two ccms.990s with our schemas;
- `sqlite`: the rows above in tables with a primary key only, 64 payments to a
  transaction, WAL, synchronous=FULL (the gateway's pragmas), their hold and
  settlement updating the payer's balance row.

The sum is a floor: the gateway's own checks, routing, state changes, indexes, history,
alerts, webhook, Redis and event loop all come on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway import bench_e2e
from gateway.bench_e2e import EXAMPLE, drive, proc_cpu_s, transfer_body
from gateway.messages import codec
from gateway.messages.examples import EXAMPLES
from gateway.redisproc import free_port, wait_port
from message_schemas import catalogue

LINK_ENVELOPES_PER_POST = 32  # four envelopes a payment: a link POST each way per 8
GROUP = 64


def _cpu_per(count: int, work) -> float:
    start = time.process_time()
    for _ in range(count):
        work()
    return (time.process_time() - start) / count


async def _http(seconds: float) -> tuple[float, float]:
    """(server CPU per request, client CPU per request) of the bare aiohttp endpoint."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", bench_e2e._BARE_SERVER, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, process=server)
        served_before = proc_cpu_s(server.pid)
        made_before = time.process_time()
        count, _ = await drive(f"http://127.0.0.1:{port}/v1/transfers", seconds, "floor")
        made = (time.process_time() - made_before) / count
        served = (proc_cpu_s(server.pid) - served_before) / count
    finally:
        server.terminate()
        server.wait()
    return served, made


def _sqlite(folder: Path, payments: int) -> float:
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "cache_size=-16384"):
        conn.execute(f"PRAGMA {pragma}")
    conn.executescript("""
        CREATE TABLE payment (id TEXT PRIMARY KEY, state TEXT, body TEXT);
        CREATE TABLE entry (id INTEGER PRIMARY KEY, event TEXT, ref TEXT);
        CREATE TABLE line (entry INTEGER, n INTEGER, account TEXT, fen INTEGER,
                           PRIMARY KEY (entry, n));
        CREATE TABLE account (id TEXT PRIMARY KEY, fen INTEGER);
        CREATE TABLE message (id INTEGER PRIMARY KEY, payment TEXT, bytes BLOB);
        CREATE TABLE idem (key TEXT PRIMARY KEY, answer TEXT);
        INSERT INTO account VALUES ('payer', 0), ('4001', 0), ('clearing', 0);
    """)
    body = json.dumps(transfer_body(0), ensure_ascii=False)
    message = EXAMPLE.read_bytes()
    small = message[:600]
    answer = json.dumps({"id": "P", "state": "accepted", "amount": "100000.00"})

    def entry(tx_id: str, kind: str, debit: str, credit: str) -> None:
        entry_id = conn.execute("INSERT INTO entry (event, ref) VALUES (?, ?) RETURNING id",
                                (f"{tx_id}:{kind}", tx_id)).fetchone()[0]
        conn.execute("INSERT INTO line VALUES (?, 1, ?, ?), (?, 2, ?, ?)",
                     (entry_id, debit, 10_000_000, entry_id, credit, -10_000_000))
        conn.execute("UPDATE account SET fen = fen - ? WHERE id = ?", (10_000_000, debit))
        conn.execute("UPDATE account SET fen = fen + ? WHERE id = ?", (10_000_000, credit))

    start = time.process_time()
    for first in range(0, payments, GROUP):
        conn.execute("BEGIN IMMEDIATE")
        for n in range(first, first + GROUP):
            tx_id = f"P{n:016d}"
            conn.execute("INSERT INTO idem VALUES (?, ?)", (tx_id, answer))
            conn.execute("INSERT INTO payment VALUES (?, 'sent', ?)", (tx_id, body))
            entry(tx_id, "hold", "payer", "4001")
            conn.execute("INSERT INTO message (payment, bytes) VALUES (?, ?), (?, ?)",
                         (tx_id, message, tx_id, small))
        for n in range(first, first + GROUP):
            tx_id = f"P{n:016d}"
            conn.execute("INSERT INTO message (payment, bytes) VALUES (?, ?), (?, ?)",
                         (tx_id, message[:1500], tx_id, small))
            entry(tx_id, "settle", "4001", "clearing")
            conn.execute("UPDATE payment SET state = 'settled' WHERE id = ?", (tx_id,))
        conn.execute("COMMIT")
    cpu = time.process_time() - start
    conn.close()
    return cpu / payments


def measure(seconds: float) -> dict[str, float]:
    served, made = asyncio.run(_http(seconds))
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    signed = b"999100000019|0000|hvps.111.001.01|20261207000000000001|" + \
        EXAMPLE.read_bytes()
    algorithm = ec.ECDSA(hashes.SHA256())
    signature = key.sign(signed, algorithm)
    body = orjson.dumps(transfer_body(0))
    reply = {"id": "P2026120700000001", "state": "accepted", "amount": "100000.00",
             "amount_fen": 10_000_000, "channel": "hvps", "history": []}
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    tree = etree.fromstring(EXAMPLE.read_bytes(), parser)
    results = [(catalogue.schema(code), codec.build_body(code, EXAMPLES[code]()))
               for code in ("ccms.900.001.02", "ccms.990.001.02", "ccms.990.001.02")]

    def read_results() -> None:
        for schema, text in results:
            assert schema.validate(etree.fromstring(text, parser))
    with tempfile.TemporaryDirectory(prefix="paygate-floor-") as folder:
        sqlite_s = _sqlite(Path(folder), 64 * 200)
    parts = {
        "http_served": served / 1, "http_made": made / 1,
        "link_http": (served + made) * 4 / LINK_ENVELOPES_PER_POST,
        "json": _cpu_per(20_000, lambda: (orjson.loads(body), orjson.dumps(reply))),
        "sign": _cpu_per(2_000, lambda: key.sign(signed, algorithm)),
        "verify": _cpu_per(2_000, lambda: public.verify(signature, signed, algorithm)),
        "xml_build": _cpu_per(5_000, lambda: etree.tostring(tree)),
        "xml_read": _cpu_per(5_000, read_results),
        "sqlite": sqlite_s,
    }
    floor = parts["http_served"] + sum(v for k, v in parts.items()
                                       if k not in ("http_served", "http_made"))
    return {"floor_us": round(floor * 1e6, 1),
            **{f"{k}_us": round(v * 1e6, 1) for k, v in parts.items()},
            "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long the bare HTTP endpoint is driven")
    args = parser.parse_args()
    print(json.dumps(measure(args.seconds), indent=1))


if __name__ == "__main__":
    main()
