"""Data for the model: procedural images, Poisson synthetic defects, datasets, metrics."""
