"""A deterministic synthetic click log at any scale (`watchnext generate`), for tests,
benchmarks and the embedded default."""
