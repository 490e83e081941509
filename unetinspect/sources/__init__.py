"""A SOURCE (preset, file, folder, live module) opened once into a Session: config, weights, device, sizes, inputs."""
