"""Running a bundle: backends behind one interface, the predictor, products, the engine check."""
