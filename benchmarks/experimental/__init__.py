"""Studies: benchmarks that time candidate rules or hardware costs rather than what ships."""
