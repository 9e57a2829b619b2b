"""The GPU benchmarks: run on a GPU machine with gpu.sh after gpu_prepare.sh here (docs/gpu.md)."""
