"""The shared vocabulary every room of the station uses: names, formats and the typed result."""
