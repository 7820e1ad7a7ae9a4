"""One gateway against several: full lifecycles a second through a fresh stack per count.

    python -m treatyflow.bench.replicas [--gateways 1 2] [--workers 1] [--lifecycles N]

For each count a fresh local stack (its own state folder and free ports, real treaty
time) with that many gateways (and ``--workers`` workers), a warm-up, then ``--rounds``
rounds of ``--lifecycles`` lifecycles (request, receipt, execution report) at most
``--concurrency`` at once, from the bench's authority pairs. Prints one JSON line per
count and a summary; figures only (docs/operators/scale-out.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from treatyflow import logs
from treatyflow.bench.harness import Authorities, CpuMeter, treatyflow_phase
from treatyflow.bench.run import bench_settings
from treatyflow.local import stack
from treatyflow.process import finish
from treatyflow.settings import Settings


async def one(base: Settings, gateways: int, workers: int, args: argparse.Namespace
              ) -> dict[str, Any]:
    settings = bench_settings(base, f"bench-replicas-{gateways}").with_(
        gateways=gateways, workers=workers)
    await asyncio.to_thread(stack.up, settings)
    extra = [n for n in stack.instances(settings) if n not in ("codec", "worker", "gateway")]
    try:
        async with Authorities(settings) as authorities:
            await treatyflow_phase(authorities, max(5, args.lifecycles // 10), args.concurrency)
            rates, cores = [], []
            for _ in range(args.rounds):
                with CpuMeter(settings, extra=tuple(extra)) as cpu:
                    phase = await treatyflow_phase(authorities, args.lifecycles,
                                                   args.concurrency)
                rates.append(phase.lifecycles_per_s)
                cores.append(cpu.cores["total"])
        return {"gateways": gateways, "workers": workers, "lifecycles": args.lifecycles,
                "concurrency": args.concurrency,
                "lifecycles_per_s": [round(r, 1) for r in rates],
                "cores_used": [round(c, 2) for c in cores]}
    finally:
        await asyncio.to_thread(stack.down, settings)


async def run(args: argparse.Namespace) -> int:
    logs.configure("warning")
    base = Settings.from_env()
    for gateways in args.gateways:
        figures = await one(base, gateways, args.workers or gateways, args)
        print(json.dumps(figures), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treatyflow.bench.replicas",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateways", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=0,
                        help="workers with each count (0: as many as gateways)")
    parser.add_argument("--lifecycles", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    finish(main())
