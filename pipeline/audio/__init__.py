"""Audio out: trimming, joining, loudness, quality measures, encoding."""
