"""`paygate`: the one command line of the product.

    paygate serve [--simulate]        the gateway (and the simulator, embedded Redis)
    paygate demo [--keep]             the main job on embedded defaults
    paygate simulate npc              the simulated central-bank node, its own process
    paygate simulate-day [--date D] [--seed N] [--keep]   a whole business day (a working
                                      day) on a virtual clock
    paygate validate FILE...          check messages
    paygate route ...                 show how a transfer would be routed, and why
    paygate ops ...                   the operators' commands (status, queues, actions)
    paygate ledger verify [--config F] [--database URL]   re-check the whole book and
                                      every figure day end stored (auditors)
    paygate bench {messages,beps,ledger,e2e} [--quick] [--no-write]   benchmarks with
                                      baselines; a full run rewrites README.md's table and
                                      benchmarks/results.json unless given --no-write
"""

from __future__ import annotations

import argparse
import json
import sys

from gateway import logs


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # Output piped into a command that stopped reading (head, less): not an error.
        sys.stderr.close()
        return 0


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "validate":
        from gateway.messages.validate_cli import validate_command
        return validate_command(rest)
    if command == "route":
        from routing.cli import route_command
        return route_command(rest)
    if command == "simulate":
        if not rest or rest[0] != "npc":
            print(json.dumps({"errors": [{"code": "simulator_unknown", "value": rest[:1],
                                          "expected": "npc"}]}))
            return 2
        from simulators.npc import main as npc_main
        return npc_main(rest[1:])
    if command == "demo":
        from gateway.demo import demo_command
        return demo_command(rest)
    if command == "simulate-day":
        from gateway.simday import simulate_day_command
        return simulate_day_command(rest)
    if command == "serve":
        return serve_command(rest)
    if command == "ops":
        from gateway.ops.cli import ops_command
        return ops_command(rest)
    if command == "bench":
        from gateway.bench import bench_command
        return bench_command(rest)
    if command == "ledger":
        from gateway.ledger_cli import ledger_command
        return ledger_command(rest)
    print(json.dumps({"errors": [{"code": "command_unknown", "path": "argv[0]",
                                  "value": command, "expected": "serve, demo, simulate, "
                                  "simulate-day, validate, route, ops, ledger or bench"}]}))
    return 2


def serve_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="paygate serve")
    parser.add_argument("--config", help="TOML settings file")
    parser.add_argument("--simulate", action="store_true",
                        help="also start the simulated NPC and an embedded Redis")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    from gateway import config
    from gateway.errors import PaygateError
    if args.port is not None and not 0 <= args.port <= 65535:
        print(json.dumps({"errors": [{"code": "setting_malformed", "path": "--port",
                                      "value": args.port, "expected": "0 to 65535 (0: any "
                                      "free port)"}]}))
        return 2
    overrides = {"port": args.port} if args.port is not None else {}
    try:
        settings = config.load_for_command(args.config, overrides, {"port": "--port"})
    except PaygateError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False))
        return 2
    logs.configure(settings.log_level)
    from gateway.serve import run
    return run(settings, simulate=args.simulate)


if __name__ == "__main__":
    sys.exit(main())
