"""barkpipe's pipeline: manifests in, Bark audio and Parquet metadata out; see docs/ARCHITECTURE.md."""
