"""The stages one row goes through: prepare (CPU), engine (GPU), finish (CPU) and commit."""
