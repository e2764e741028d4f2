"""The station's SQLite store under the data directory."""
