"""ARC guide track: DSL, synthetic data generator, packed loader, guide model (see README.md)."""
