"""The review page: one self-contained HTML file that puts a run's flagged rows and chunks first."""

# Rows one page lists (`barkpipe report --max-rows`): each may embed audio and draws a waveform, so a
# page stays a few MB of HTML (plus the audio budget); here, so the CLI's --help needs no pyarrow.
MAX_ROWS = 200
