"""The line daemon and the rooms it wires: stages, faults, watches, housekeeping, pairing."""
