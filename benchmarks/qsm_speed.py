"""QSM speed and memory: a 1 mm 256x256x160, 12-echo subject through the default chain.

``--mask given`` (default) hands the chain the subject's true brain mask, as the workflow hands it the
T1w-derived one; ``--mask magnitude`` makes the mask from the magnitude (BET after N4), the GRE-only
path.

Reports wall time per stage and in total, peak memory (resident set size of this process),
and the time of one forward+inverse 3D FFT pair on the chain's padded grid, so the cost reads
as "FFT-pair equivalents". Usage: python benchmarks/qsm_speed.py [--threads 2]
Writes benchmarks/results/qsm_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/simulation/study.yaml")
    ap.add_argument("--subject", default="sub-NC001")
    ap.add_argument("--work", default="benchmarks/out/qsm_accuracy/sim")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mask", choices=["given", "magnitude"], default="given")
    ap.add_argument("--out", default="benchmarks/results/qsm_speed.json")
    args = ap.parse_args(argv)
    os.environ["QSMVBM_THREADS"] = str(args.threads)
    import numpy as np
    import scipy.fft as sfft

    from qsmvbm.bids import load_megre
    from qsmvbm.qsm.grid import Padded
    from qsmvbm.qsm.pipeline import reconstruct
    from qsmvbm.simulate.cohort_io import simulate_one, truth_dir, write_cohort_tables
    from qsmvbm.simulate.settings import load_simulation_config
    from qsmvbm.simulate.subject import truth_paths

    bids = Path(args.work)
    if not truth_paths(truth_dir(bids), args.subject)["chi"].exists():
        cfg = load_simulation_config(args.config)
        simulate_one(cfg, bids, args.subject, write_cohort_tables(cfg, bids))
    t0 = time.perf_counter()
    g = load_megre(bids, args.subject)
    t_load = time.perf_counter() - t0
    given = None
    if args.mask == "given":
        import nibabel as nib

        tp = truth_paths(truth_dir(bids), args.subject)
        given = np.asarray(nib.load(tp["gre_mask"]).dataobj) > 0
    t0 = time.perf_counter()
    res = reconstruct(g.mag, g.phase, g.affine, g.echo_times_s, g.field_strength_t, None, given)
    t_chain = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shape = Padded(res.final_mask, pad=16).shape
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        sfft.irfftn(sfft.rfftn(x, workers=args.threads), s=shape, workers=args.threads)
        times.append(time.perf_counter() - t0)
    fft_pair = float(np.median(times))
    out = {
        "data": {"shape": list(g.mag.shape), "voxel_mm": g.voxel_size.tolist()},
        "threads": args.threads,
        "mask": args.mask,
        "background": res.info["parameters"]["background"],
        "load_s": round(t_load, 2),
        "chain_s": round(t_chain, 2),
        "total_s": round(t_load + t_chain, 2),
        "stages_s": res.info["timings_s"],
        "peak_rss_mb": round(peak_mb),
        "fft_pair_grid": list(shape),
        "fft_pair_s": round(fft_pair, 4),
        "chain_in_fft_pairs": round(t_chain / fft_pair, 1),
        "inversion_iterations": res.info.get("inversion_iterations"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
