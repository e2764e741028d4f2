"""From map to verdict and picture: region of interest, tiles, decision, overlay."""
