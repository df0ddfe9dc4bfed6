"""Text in: normalising, splitting into Bark-sized chunks, books to manifests."""
