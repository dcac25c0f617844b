"""The figures of the sweep issue, measured on this machine.

    python bench/sweep_figures.py OUT.json [EPOCHS] [--no-ensemble]

1. four runs of the book's conv net (conv2_relu, EPOCHS epochs on the bundled
   digits, seeds 0-3) as a sweep on a LocalCluster of 2 workers x 1 thread,
   against the same four runs one after another in this process on 2 threads;
2. the per-run overhead of going through Dask: 8 tiny runs through an already
   started 1-worker cluster against the same runs in this process;
3. the chapter's five-member ensemble (conv2_relu_dropout, seeds 0-4) trained
   as a sweep on the 2 workers, its accuracy against its best member's.
Wall times depend on the machine's load (printed beside them).
"""

import json
import logging
import os
import sys
import tempfile
import time

from fastnet import sweep as sw


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main(out_path, epochs, with_ensemble=True):
    import distributed
    figures = {"epochs": epochs, "cpu_count": os.cpu_count(), "load_before": loadavg()}
    work = tempfile.mkdtemp(prefix="fastnet-sweep-figures-")
    conv = {"name": "conv2_relu x4", "network": "conv2_relu",
            "sgd": {"epochs": epochs, "mini_batch_size": 10}, "seeds": [0, 1, 2, 3]}

    serial, t_serial = timed(lambda: sw.sweep(conv, os.path.join(work, "serial"),
                                              serial=True, threads_per_worker=2, plot=False))
    figures["serial_2_threads"] = {"wall_s": t_serial, "load_after": loadavg(),
                                   "run_s": [o["seconds"] for o in serial.outcomes]}

    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        t_start = time.perf_counter() - t0
        swept, t_sweep = timed(lambda: sw.sweep(conv, os.path.join(work, "dask"),
                                                client=client, threads_per_worker=1,
                                                plot=False))
        figures["dask_2x1"] = {"cluster_start_s": t_start, "wall_s": t_sweep,
                               "load_after": loadavg(),
                               "run_s": [o["seconds"] for o in swept.outcomes]}
        figures["ratio_serial_over_dask"] = t_serial / t_sweep
        figures["ratio_serial_over_dask_with_start"] = t_serial / (t_sweep + t_start)

        if with_ensemble:
            ens_spec = {"name": "ensemble", "network": "conv2_relu_dropout",
                        "sgd": {"epochs": epochs, "mini_batch_size": 10},
                        "seeds": [0, 1, 2, 3, 4], "ensemble": {"vote": "plurality"}}
            ens, t_ens = timed(lambda: sw.sweep(ens_spec, os.path.join(work, "ensemble"),
                                                client=client, plot=False))
            e = ens.ensembles[0]
            figures["ensemble"] = {"wall_s": t_ens, "load_after": loadavg(),
                                   "plurality_accuracy": e["plurality_vote_accuracy"],
                                   "average_accuracy": e["average_vote_accuracy"],
                                   "member_accuracies": e["member_accuracies"],
                                   "best_member_accuracy": e["best_member_accuracy"]}
            with open(os.path.join(work, "ensemble", "results.md")) as f:
                figures["ensemble_table"] = f.read()

    tiny = {"name": "tiny", "network": "fc", "data": {"limit": [100, 50, 50]},
            "sgd": {"epochs": 1, "mini_batch_size": 10}, "seeds": list(range(8))}
    _, t_tiny_serial = timed(lambda: sw.sweep(tiny, os.path.join(work, "tiny-serial"),
                                              serial=True, plot=False))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        _, t_tiny_dask = timed(lambda: sw.sweep(tiny, os.path.join(work, "tiny-dask"),
                                                client=client, plot=False))
    figures["overhead"] = {"runs": 8, "serial_s": t_tiny_serial, "dask_1_worker_s": t_tiny_dask,
                           "per_run_s": (t_tiny_dask - t_tiny_serial) / 8}
    figures["load_after"] = loadavg()
    figures["work_dir"] = work
    with open(out_path, "w") as f:
        json.dump(figures, f, indent=1)
    print(json.dumps({k: v for k, v in figures.items() if k != "ensemble_table"}, indent=1))
    print(figures.get("ensemble_table", ""))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-ensemble"]
    main(args[0], int(args[1]) if len(args) > 1 else 3, "--no-ensemble" not in sys.argv)
