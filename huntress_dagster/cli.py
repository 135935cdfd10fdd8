"""The `huntress-dagster` command line."""

from __future__ import annotations

import argparse
import sys

from .simulator import DEMO_API_SECRET, SimulatorConfig, SimulatorServer, World, WorldConfig


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--organizations", type=int, default=5)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--days", type=int, default=30, help="incident history spread over this many days")
    parser.add_argument("--large-body-share", type=float, default=0.01, help="share of 500 KiB..5 MiB bodies")
    parser.add_argument("--huge-body-share", type=float, default=0.0, help="share of bodies >= 5 MiB")


def world_config_from(args: argparse.Namespace) -> WorldConfig:
    return WorldConfig(seed=args.seed, organizations=args.organizations, agents=args.agents,
                       incidents=args.incidents, days=args.days, large_body_share=args.large_body_share,
                       huge_body_share=args.huge_body_share)


def run_simulator(args: argparse.Namespace) -> int:
    config = SimulatorConfig(rate_limit=args.rate_limit, rate_window_seconds=args.rate_window,
                             tick_seconds=args.tick_seconds)
    server = SimulatorServer(World(world_config_from(args)), config, host="127.0.0.1", port=args.port)
    print(f"Huntress API simulator listening on {server.url}", flush=True)
    print(f"  HUNTRESS_HOST_URL={server.url}")
    print(f"  HUNTRESS_API_KEY={config.api_key}")
    print(f"  HUNTRESS_API_SECRET={DEMO_API_SECRET}   (demo credentials of the simulator only)")
    print(f"  admin API: {server.admin_url}/info, /requests, POST /tick, POST /faults", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="huntress-dagster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulator", help="run the bundled Huntress API simulator on 127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    add_world_arguments(sim)
    sim.add_argument("--rate-limit", type=int, default=60, help="requests per window (Huntress: 60)")
    sim.add_argument("--rate-window", type=float, default=60.0, help="window seconds (Huntress: 60)")
    sim.add_argument("--tick-seconds", type=float, default=0.0,
                     help="move time every N seconds: new incidents, status changes, agent callbacks")
    sim.set_defaults(func=run_simulator)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
