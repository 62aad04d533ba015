"""Device benchmarks (run on the GPU machine; results under benchmarks/results/)."""
