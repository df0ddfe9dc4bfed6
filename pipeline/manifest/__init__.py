"""The input contract: manifest columns, reading, row values and their checks."""
