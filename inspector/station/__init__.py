"""The line daemon and the small pieces it wires: stages, pairing, batching, health, telemetry."""
