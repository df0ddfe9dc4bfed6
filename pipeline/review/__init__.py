"""The review page: one self-contained HTML file that puts a run's flagged rows and chunks first."""
