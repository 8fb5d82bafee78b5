"""Benchmark: how long Ray Tune takes to make the trials of a grid sweep of n trial ids.

Ray Tune makes a trial when it can schedule one (and, for a grid, all of them up front). Two
ways to hand it n trial ids, each timed making all n trials, nothing run:

* baseline: ``param_space={"trial": tune.grid_search(ids)}``, what a Ray Tune user writes
  (Tune's ``BasicVariantGenerator``);
* relex: ``relex.sweep.specs.grid_search_alg(ids)``, the queue relex's grid sweeps hand Tune
  (Tune's ``SearchGenerator`` over it), behind the concurrency limiter a capped sweep adds.

Tune's grid generation deep-copies the whole list of values for every variant it makes, so the
baseline grows as n²; the queue hands out one id per trial. Target: making trials is O(n), the
time per trial flat from 1,000 to 10,000 (what is left is Tune's own making of a trial).

    .venv/bin/python bench/trial_making.py [--sizes 1000 3000 10000] [--json FILE]
"""

from __future__ import annotations

import sys
import tempfile
import time

import _common as C


def _experiment(config: dict, storage: str, num_samples: int):
    from ray.tune.experiment import Experiment

    return Experiment("making", run=lambda config: None, config=config, num_samples=num_samples,
                      storage_path=storage, trial_name_creator=lambda t: str(t.config["trial"]),
                      trial_dirname_creator=lambda t: str(t.config["trial"]))


def _made(generator) -> int:
    n = 0
    while generator.next_trial() is not None:
        n += 1
    return n


def time_grid_search(ids: list[str], storage: str) -> tuple[float, int]:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    t0 = time.perf_counter()
    gen = BasicVariantGenerator()
    gen.add_configurations([_experiment({"trial": tune.grid_search(ids)}, storage, 1)])
    made = _made(gen)
    return time.perf_counter() - t0, made


def time_queue(ids: list[str], storage: str) -> tuple[float, int]:
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    from relex.sweep.specs import grid_search_alg

    t0 = time.perf_counter()
    # a limiter as wide as the grid: it holds every trial live, as a sweep's limiter would at most
    gen = SearchGenerator(ConcurrencyLimiter(grid_search_alg(ids), max_concurrent=len(ids)))
    gen.add_configurations([_experiment({}, storage, sys.maxsize)])
    made = _made(gen)
    return time.perf_counter() - t0, made


def main(argv=None) -> int:
    p = C.parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    args = p.parse_args(argv)
    sizes = [200, 400] if args.quick else args.sizes
    info = C.machine()
    C.print_machine(info)
    rows, figures = [], []
    with tempfile.TemporaryDirectory() as storage:
        for n in sizes:
            ids = [f"t{i:05d}" for i in range(n)]
            base_s, base_n = time_grid_search(ids, storage)
            relex_s, relex_n = time_queue(ids, storage)
            assert base_n == relex_n == n, (base_n, relex_n, n)
            figures.append({"n": n, "grid_search_s": base_s, "queue_s": relex_s,
                            "speedup": base_s / relex_s})
            rows.append([n, f"{base_s:.2f}", f"{1e3 * base_s / n:.2f}", f"{relex_s:.2f}",
                         f"{1e3 * relex_s / n:.2f}", f"{base_s / relex_s:.1f}×"])
    print(C.table(rows, ["trials", "grid_search s", "ms/trial", "relex queue s", "ms/trial",
                         "baseline ÷ relex"]))
    C.write_json(args.json, {"machine": info, "sizes": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
