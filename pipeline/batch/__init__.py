"""The batch run: config, manifest, Ray Data stages, writing and the summary."""
