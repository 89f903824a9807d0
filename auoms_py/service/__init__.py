"""The running agent: configuration, wiring of collector -> pipeline -> outputs, signals, metrics."""
