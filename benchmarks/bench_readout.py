"""Cost of the explanation checks of issue 12 with the bundled models: atlas regions, region
importance (one forward pass per atlas region) and faithfulness (18 per map + 18 at random).

    OMP_NUM_THREADS=2 python benchmarks/bench_readout.py [--scan T1.nii.gz] [--methods gradcam++,smoe,smoe*gradcam++]

Default scan: the demo's "old AD-like" phantom. Prints the wall time of each step (from
``Analysis.timings``) and the load average, since a shared machine inflates every figure.
"""

from __future__ import annotations

import argparse
import os

import torch

from napari_bavis import pipeline
from napari_bavis.atlases import ATLASES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scan", help="a T1 file (default: the demo sample)")
    parser.add_argument("--models", default="ds002748,demo")
    parser.add_argument("--methods", default=",".join(pipeline.DEFAULT_METHODS))
    parser.add_argument("--atlas", default="harvard_oxford", choices=list(ATLASES))
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    if args.scan:
        scan, label = args.scan, args.scan
    else:
        from napari_bavis.cli import demo_sample
        from napari_bavis.io import scan_from_image

        image, _, _, label = demo_sample()
        scan = scan_from_image(image, path="demo.nii.gz")
    methods = tuple(args.methods.split(","))
    print(f"scan: {label}; {len(methods)} maps; atlas {args.atlas}; torch threads {torch.get_num_threads()}")
    print("| model | atlas regions s | region importance s | faithfulness s | regions | top region (Δ y) |")
    print("|---|---:|---:|---:|---:|---|")
    for name in args.models.split(","):
        if name not in pipeline.bundled_models():
            print(f"| {name} | not installed | | | | |")
            continue
        a = pipeline.analyze(scan, model=name, methods=methods, device="cpu", atlas=args.atlas,
                             region_importance=True, faithfulness=True)
        t = a.timings
        top = a.region_importance[0] if a.region_importance else None
        top_text = f"{top['hemisphere']} {top['region']} ({top['delta_years']:+.2f})" if top else "-"
        print(f"| {name} | {t.get('atlas regions', 0):.2f} | {t.get('region importance', 0):.2f} | "
              f"{t.get('faithfulness', 0):.2f} | {len(a.region_importance or [])} | {top_text} |")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
