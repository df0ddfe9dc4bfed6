"""The output contract: folder layout, commits, the newest-record reader, summary and lease."""
