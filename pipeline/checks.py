"""Checks that cost no generation: weights files, voices, device, storage; `validate` and `run` call them first."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bark_model.names import (
    CODEC_FILE,
    DEVICE_PATTERN,
    DEVICES,
    HF_CONFIG_FILE,
    HF_CONFIG_KEYS,
    HF_TOKENIZER_FILES,
    HF_WEIGHT_FILES,
    PROMPT_KEYS,
    RANDOM_MARKER,
    SUNO_FILES,
    VOCAB_FILE,
)
from bark_model.voices import VoiceLibrary, load_npz
from pipeline.extras import missing, speech_feature
from pipeline.jobenv import job_path_problems, job_weights_fix
from pipeline.probes import STORAGE_TIMEOUT_S, CheckError, check_local_output, check_storage
from pipeline.text.chunks import text_token_counter
from pipeline.text.lexicon import check_lexicon
from pipeline.weights import WeightsError, is_remote, parse_source
from pipeline.weights.select import weights_hint

SAFETENSORS_MAX_HEADER = 100 * 2**20  # the format's own limit on the JSON header
ZIP_MAGIC = b"PK\x03\x04"  # a zip's first local file header: what torch.save writes since torch 1.6
PICKLE_PROTO = b"\x80"  # first byte of a protocol-2+ pickle: a legacy (pre-zip) torch file
LAYOUT_FIX = (f"expected {', '.join(SUNO_FILES['large'].values())}, {CODEC_FILE} and {VOCAB_FILE}, "
              f"or {HF_CONFIG_FILE} with {HF_WEIGHT_FILES[0]}")  # fmt: skip


@dataclass
class WeightsInfo:
    root: Path
    layout: str  # "suno" | "hf"
    size: str
    files: list[Path] = field(default_factory=list)

    @property
    def random(self) -> bool:
        return (self.root / RANDOM_MARKER).is_file()

    def describe(self) -> str:
        kind = "random test weights, " if self.random else ""
        return f"{self.layout} layout, {self.size}, {kind}{len(self.files)} file(s) with readable headers"


# -- weights -------------------------------------------------------------------------------------


def _weights_fix(path: str | Path) -> str:
    """How to put the weights there: under `ray job submit`, never into the job's temporary upload."""
    return job_weights_fix() or weights_hint(path)


def check_weights(path: str | Path, key: str = "model.weights") -> WeightsInfo:
    """Every file the weights need is present and its header reads (no tensor is loaded)."""
    root = Path(path)
    if not root.is_dir():
        raise CheckError(f"{key} {str(path)!r} is not a directory; {_weights_fix(path)}")
    names = {p.name for p in root.iterdir()}
    if HF_CONFIG_FILE in names or names & set(HF_WEIGHT_FILES):
        info = _hf_files(root, names, key)
    else:
        info = _suno_files(root, names, key)
    for file in info.files:
        check_file_header(file, key)
    _check_tokenizer(root, key)
    return info


def _check_tokenizer(root: Path, key: str) -> None:
    """The vocabulary loads and encodes (an empty or corrupt one would end the run inside its first actor)."""
    try:
        text_token_counter(root)
    except ValueError as exc:
        raise CheckError(f"{key}: {exc}") from None


def _missing(root: Path, key: str, missing: list[str], layout: str) -> CheckError:
    return CheckError(f"{key} {str(root)!r}: missing {', '.join(missing)} (needed by the {layout} layout); "
                      f"{_weights_fix(root)}")  # fmt: skip


def _suno_files(root: Path, names: set, key: str) -> WeightsInfo:
    """The Suno size whose models are here (any of the small ones counts); the large one when unsure."""
    for size, roles in SUNO_FILES.items():
        models = tuple(roles.values())
        if models[0] in names or (size == "small" and names & set(models)):
            missing = [n for n in (*models, CODEC_FILE, VOCAB_FILE) if n not in names]
            if missing:
                raise _missing(root, key, missing, f"Suno {size}")
            return WeightsInfo(root, "suno", size, [root / n for n in (*models, CODEC_FILE)])
    large = tuple(SUNO_FILES["large"].values())
    if names & set(large):
        missing = [n for n in (*large, CODEC_FILE, VOCAB_FILE) if n not in names]
        raise _missing(root, key, missing, "Suno large")
    raise CheckError(f"{key} {str(root)!r} holds no Bark weights ({LAYOUT_FIX}); {_weights_fix(root)}")


def _hf_files(root: Path, names: set, key: str) -> WeightsInfo:
    weights = [n for n in HF_WEIGHT_FILES if n in names]
    missing = [] if HF_CONFIG_FILE in names else [HF_CONFIG_FILE]
    missing += [] if weights else [f"{HF_WEIGHT_FILES[0]} (or {HF_WEIGHT_FILES[1]})"]
    missing += [] if names & set(HF_TOKENIZER_FILES) else [" (or ".join(HF_TOKENIZER_FILES) + ")"]
    if missing:
        raise _missing(root, key, missing, "Hugging Face")
    config = root / HF_CONFIG_FILE
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckError(f"{key}: {config} is not readable JSON ({exc}); download it again") from None
    sections = HF_CONFIG_KEYS.values()
    absent = [k for k in sections if k not in data] if isinstance(data, dict) else list(sections)
    if absent:
        raise CheckError(f"{key}: {config} has no {', '.join(absent)}; is it a Bark config.json?")
    return WeightsInfo(root, "hf", "from config.json", [root / weights[0]])


def check_file_header(path: Path, key: str = "model.weights") -> None:
    """Raise CheckError when a weight file is empty, truncated or not the format its name says."""
    size = path.stat().st_size
    fix = "the file is damaged or was cut short; download it again"
    if size == 0:
        raise CheckError(f"{key}: {path} is empty; {fix}")
    if path.suffix == ".safetensors":
        problem = _safetensors_problem(path, size)
    else:
        problem = _torch_problem(path)
    if problem:
        raise CheckError(f"{key}: {path} {problem}; {fix}")


def _safetensors_problem(path: Path, size: int) -> str | None:
    # Layout: u64 little-endian header length N, N bytes of JSON, then the tensor bytes.
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "is shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > min(SAFETENSORS_MAX_HEADER, size - 8):
            return "has no valid safetensors header"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return "has a corrupt safetensors header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + n + max(ends, default=0)
    if size < expected:
        return f"is truncated ({size:,} bytes; its header describes {expected:,})"
    return None


def _torch_problem(path: Path) -> str | None:
    # torch.save writes a zip archive whose directory sits at the end: a cut file loses it.
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                entries = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            return f"is not a complete torch archive, it was probably cut short ({exc})"
        if not any(e.endswith("data.pkl") for e in entries):
            return "is a zip archive but not a torch checkpoint (no data.pkl)"
        return None
    if magic[:1] == PICKLE_PROTO:  # legacy torch format: the header is checked, its length cannot be
        return None
    return "is not a torch checkpoint (neither a torch zip archive nor a legacy pickle)"


def check_remote_weights(url: str, options: dict[str, Any], timeout_s: float = STORAGE_TIMEOUT_S) -> str:
    """A weights URL is well formed and (fsspec) its store answers; the files are checked after each node's download."""
    try:
        source = parse_source(url)
    except WeightsError as exc:
        raise CheckError(f"model.weights: {exc}") from None
    if source.kind == "hf":
        # No Hub request here: the download (with its own bounded retries) is each node's first step.
        return f"{source.url} (Hugging Face Hub; each node downloads it before its first row)"
    reach = check_storage(url, options, "model.weights", write=False, timeout_s=timeout_s)
    return f"{source.url} {reach}; each node downloads it before its first row"


# -- voices --------------------------------------------------------------------------------------


def check_voice(voice: str | None, weights: str | Path, key: str = "generation.voice") -> None:
    """A preset that the weights directory holds, or an .npz file with the three prompt arrays."""
    if voice is None:
        return
    spec = str(voice).strip()
    if not spec:
        raise CheckError(f"{key} is empty; give a preset name like 'v2/en_speaker_6', an .npz path, or null")
    if spec.endswith(".npz"):
        _check_npz(Path(spec), key)
        return
    if is_remote(weights):
        return  # presets arrive with the weights; the engine checks them after the download
    try:  # the engine's own lookup, so validate accepts exactly the presets a run can load
        VoiceLibrary(Path(weights)).load(spec)
    except (ValueError, OSError) as exc:
        raise CheckError(f"{key}: {exc}") from None


def _check_npz(path: Path, key: str) -> None:
    if not path.is_file():
        raise CheckError(f"{key}: voice file {str(path)!r} does not exist")
    try:
        # Bounded: its headers are checked before anything is read (np.load allocates what a header declares).
        arrays = load_npz(path, keys=PROMPT_KEYS)
    except (ValueError, OSError) as exc:
        raise CheckError(f"{key}: {exc}") from None
    missing = [k for k in PROMPT_KEYS if k not in arrays]
    if missing:
        raise CheckError(f"{key}: {path} lacks {', '.join(missing)}; a voice prompt needs {', '.join(PROMPT_KEYS)}")


# -- device --------------------------------------------------------------------------------------


def check_device(device: str, key: str = "model.device", fix: str | None = None) -> str:
    """The device exists here (torch is imported only for cuda/mps); returns it."""
    fix = fix or f"set {key}: cpu (or auto)"
    if not DEVICE_PATTERN.fullmatch(str(device)):
        raise CheckError(f"{key} must be {DEVICES}, got {device!r}")
    if device in ("auto", "cpu"):
        return device
    import torch  # ~1.5 s: paid only when a GPU device is asked for, not by every `validate`

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CheckError(f"{key} is {device!r} but torch sees no CUDA device on this machine; {fix}")
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise CheckError(f"{key} is {device!r} but this machine has {count} CUDA device(s) (0..{count - 1})")
    elif not torch.backends.mps.is_available():
        raise CheckError(f"{key} is 'mps' but MPS is not available on this machine; {fix}")
    return device


# -- a whole run ---------------------------------------------------------------------------------


@dataclass
class Report:
    """What `validate` finds: passed checks, warnings, and every problem (not just the first).

    problems stop a run; row_problems (grouped lines about manifest rows) are errors for
    `validate` and warnings for `run`, whose bad rows become error rows while the others go on.
    """

    passed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    row_problems: list[str] = field(default_factory=list)
    manifest: Any = None  # pipeline.manifest.read.ManifestInfo, when the manifest could be read

    @property
    def empty(self) -> bool:
        """The manifest was read and holds no rows."""
        return self.manifest is not None and self.manifest.num_rows == 0

    def lines(self) -> list[str]:
        width = max((len(name) for name, _ in self.passed), default=0)
        return [f"ok  {name.ljust(width)}  {detail}" for name, detail in self.passed] + [
            f"warning: {w}" for w in self.warnings
        ]

    def record(self, name: str, check: Callable[[], str]) -> bool:
        """Run one check: its detail goes to passed, its CheckError to problems; True when it passed."""
        try:
            self.passed.append((name, check()))
        except CheckError as exc:
            self.problems.append(str(exc))
            return False
        return True


def _relative_hint(path: str) -> str:
    return f" (relative paths are read from the current directory, {os.getcwd()})" if not os.path.isabs(path) else ""


def check_run(cfg, *, storage_timeout_s: float = STORAGE_TIMEOUT_S, check_local_device: bool | None = None,
              rows: bool = True) -> Report:  # fmt: skip
    """Every check of a run config that costs no generation; every problem is collected, none raised.

    The storage probes (input, output, weights URL) run at the same time, so the wait is that of
    the slowest, bounded by storage_timeout_s. check_local_device: None = only when the run will
    start its own Ray here (no RAY_ADDRESS): a job submitted to a cluster runs on the cluster's
    devices, not the driver's. rows: also read every manifest row for the per-row checks.
    """
    report = Report(problems=job_path_problems(cfg))  # `ray job submit`: no path into Ray's temporary upload
    if report.problems:  # and no probe or weights hint about those paths
        return report
    with ThreadPoolExecutor(max_workers=len(STORAGE_KEYS), thread_name_prefix="barkpipe-probe") as pool:
        probes = {key: pool.submit(probe) for key, probe in _storage_probes(cfg, storage_timeout_s).items()}
        weights_ok = _check_local(cfg, report, check_local_device)
        reached = {key: report.record(key, future.result) for key, future in probes.items()}
    weights_ok = weights_ok and reached.get("model.weights", True)
    if reached.get("input.path", True):
        # Here, not at the top: pyarrow (~0.3 s) would load for `barkpipe say`, which imports this module.
        from pipeline.manifest.checks import check_manifest

        check_manifest(cfg, report, rows, weights_ok, check_voice)
    return report


STORAGE_KEYS = ("model.weights", "input.path", "output.path")


def _storage_probes(cfg, timeout_s: float) -> dict[str, Callable[[], str]]:
    """The storage checks by key; each returns its detail or raises CheckError within timeout_s."""
    m, i, o = cfg.model, cfg.input, cfg.output
    probes: dict[str, Callable[[], str]] = {}
    if is_remote(m.weights):
        probes["model.weights"] = lambda: check_remote_weights(m.weights, m.storage_options, timeout_s)
    if is_remote(i.path):
        probes["input.path"] = lambda: check_storage(i.path, i.storage_options, "input.path", write=False,
                                                     timeout_s=timeout_s)  # fmt: skip
    if is_remote(o.path):
        probes["output.path"] = lambda: check_storage(o.path, o.storage_options, "output.path", write=True,
                                                      timeout_s=timeout_s)  # fmt: skip
    else:
        probes["output.path"] = lambda: check_local_output(o.path)
    return probes


def _check_local(cfg, report: Report, check_local_device: bool | None) -> bool:
    """Weights, device, voices, extras and job paths; True when local weights (if any) are readable."""
    m, g, q = cfg.model, cfg.generation, cfg.quality
    weights_ok = True
    if not is_remote(m.weights):
        weights_ok = report.record("model.weights", lambda: _local_weights(m.weights))
    if check_local_device is None:
        check_local_device = not os.environ.get("RAY_ADDRESS")
    if check_local_device:
        fix = "set model.device: cpu (or --set model.device=cpu) and compute.gpus_per_actor: 0"
        report.record("model.device", lambda: check_device(m.device, "model.device", fix))
    else:
        report.passed.append(("model.device", f"{m.device} (checked by the actors on the cluster)"))
    if m.device.startswith("cuda") and cfg.compute.gpus_per_actor == 0:
        report.warnings.append(f"model.device is {m.device!r} but compute.gpus_per_actor is 0, so Ray reserves no "
                               "GPU for the actors; set compute.gpus_per_actor: 1")  # fmt: skip
    # A preset is looked up in the weights: with unreadable weights that check would only repeat their problem.
    if weights_ok or str(g.voice or "").endswith(".npz"):
        report.record("generation.voice", lambda: _voice_detail(g.voice, m.weights))
    for name, voice in g.speakers.items():
        if weights_ok or voice.endswith(".npz"):
            key = f"generation.speakers.{name}"
            report.record(key, partial(_voice_detail, voice, m.weights, key))
    features = ([speech_feature(q.speech.backend)] if q.speech else []) + (["quality.speaker"] if q.speaker else [])
    report.problems += [p for p in (missing(f) for f in features) if p]
    if g.lexicon:
        lexicon_problems = check_lexicon(g.lexicon)  # one line per bad line of the file
        report.problems += lexicon_problems
        if not lexicon_problems:
            report.passed.append(("generation.lexicon", f"{g.lexicon} ok"))
    return weights_ok


def _local_weights(path: str) -> str:
    try:
        return check_weights(path).describe()
    except CheckError as exc:
        raise CheckError(f"{exc}{_relative_hint(path)}") from None


def _voice_detail(voice: str | None, weights: str, key: str = "generation.voice") -> str:
    check_voice(voice, weights, key)
    return voice or "none (rows without a voice use no prompt)"
