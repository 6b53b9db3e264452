"""Benchmarks of jaxvision: training/inference throughput, MFU, PyTorch side by side, input pipeline,
time to accuracy. Entry point: ``python -m benchmarks.run`` (see benchmarks/README.md)."""
