"""Write examples/smoke_manifest.parquet: a few short rows for `barkpipe run configs/smoke.yaml`."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROWS = [
    {"id": "greeting", "text": "Hello there! This is the barkpipe smoke test.", "voice": None, "seed": 7,
     "chapter": 1},
    {"id": "two-paragraphs", "text": "The first paragraph is short.\n\nThe second one follows after a longer pause.",
     "voice": "v2/en_speaker_1", "seed": None, "chapter": 1},
    {"id": "numbers", "text": "It costs $3.50, and the train leaves at 10 past 9.", "voice": None, "seed": None,
     "chapter": 2},
    {"id": "laugh", "text": "Well [laughs] that went better than expected.", "voice": "announcer", "seed": 3,
     "chapter": 2},
]


def main(out: Path = Path(__file__).with_name("smoke_manifest.parquet")) -> Path:
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("voice", pa.string()),
                        ("seed", pa.int64()), ("chapter", pa.int32())])
    pq.write_table(pa.Table.from_pylist(ROWS, schema=schema), out)
    return out


if __name__ == "__main__":
    print(main())
