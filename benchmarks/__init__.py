"""nertune's benchmarks, by question (benchmarks/README.md is the index). Run each from the repository root as a module."""
