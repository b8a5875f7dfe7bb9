"""Benchmarks of the pipeline, kept out of the library: `python -m benchmarks sampling | study`.

Run from the repository root. Each times the library functions that the stages call, never copies
of them; the slice sizes are flags, the study's sizes come from `params.yaml` and its method count
from `grid.yaml`.

- `sampling`: our `sample` stage's generation against the reference study's loop;
- `random_init`: the paper's architectures at random weights (no Hub), real IMDB lengths;
- `training`: DPO steps as the `train` stage runs them, timed per step or profiled;
- `study`: every compute stage timed on a slice, plain vs fast paths, the full study projected;
- `cli`: the command line (`python -m benchmarks -h`).
"""
