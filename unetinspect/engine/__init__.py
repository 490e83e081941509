"""Measuring any `nn.Module`: hooks into a Trace, FLOPs, meta-device shortcuts, timing, the hardware it runs on."""
