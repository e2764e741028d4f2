"""The station's one YAML configuration file, one module per section."""
