"""`barkpipe export`: a run's output as a Hugging Face Parquet dataset or WebDataset tar shards."""
