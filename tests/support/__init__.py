"""Test helpers: S3 servers and a Ray head node on 127.0.0.1."""
