"""Training: the one epoch loop and the methods that plug into it."""
