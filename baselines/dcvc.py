"""DCVC-FM and DCVC-DC, run from the user's checkout of microsoft/DCVC and its checkpoints.

Nothing of DCVC is vendored or pip-installable: ``dcvc_root`` (``--dcvc-root``) is a checkout
of https://github.com/microsoft/DCVC (the repository root, or the model's own folder, e.g.
``DCVC-family/DCVC-FM``), and ``dcvc_weights`` (``--dcvc-weights``) the folder of its
checkpoints (default: the model folder's ``checkpoints/``).

**One process per family.** DCVC's models need their C++ entropy coder (``MLCodec_rans`` and
``MLCodec_CXX``, built into ``src/models/``), which they import late, inside ``update()``,
with a relative import of the ``src`` package; and DCVC-FM's and DCVC-DC's coders cannot
live in one process (pybind11 refuses the second ``RansEncoder`` type: "generic_type: type
"RansEncoder" is already registered!"). So the adapter never imports DCVC itself: each
family runs in a child process of its own (``serve``), which imports the checkout's ``src``
the way its ``test_video.py`` does, keeps it and the networks loaded, and codes whole videos
on request. A worker that runs dcvc-fm jobs and then dcvc-dc jobs holds one child of each;
a crash in DCVC's native code costs the child, reported as the job's error.

What each family runs, as its own test script does with ``--write_stream 1 --yuv420 1``:

- **DCVC-FM** (CVPR 2024, ``src/utils/test_helper.py``): rate points are its q indices
  0..63, 63 the highest rate, used for I and P frames alike; the stream is DCVC-FM's own
  (SPS + one NAL unit per frame, ``src.utils.stream_helper``), written by
  ``DMCI.encode``/``DMC.encode`` and read back by ``decompress``; P frames use its
  hierarchical quality (``fa_idx`` from ``[0, 1, 0, 2, 0, 2, 0, 2]``, rate GOP 8) and the
  feature reset every 32 frames (``fa_idx`` 3). Frames are padded to a multiple of 16.
- **DCVC-DC** (CVPR 2023, ``test_video.py``): rate points are q indices 0..63 into the
  checkpoint's q scales interpolated log-linearly between its first and last anchor
  (``q_in_ckpt=False``, as its ``--rate_num`` other than 4 runs it); ``q_in_ckpt=true``
  takes the checkpoint's own 4 anchors, indices 0..3 (its default 4-rate run). P frames pass
  ``frame_idx % 4``. Each frame is DCVC-DC's own per-frame file (``encode_i``/``encode_p``,
  written and decoded back by ``encode_decode``); the frames are concatenated with their
  lengths (:mod:`baselines.container`), whose header says which frames are intra. P-frame
  files carry no picture size: the decoder takes the last I frame's. Padding: 16.

Both read YUV 4:2:0 with planes scaled to [0, 1] by the source's peak (8 or 10 bits), chroma
upsampled by nearest neighbour (``ycbcr420_to_444(..., order=0)``), and write back with
``ycbcr444_to_420`` and rounding, cropping the padding. On the CPU, DCVC's unconditional
``torch.cuda.synchronize()`` (it times P frames) is made a no-op in the child, for non-CUDA
devices only.

**Checkpoints** load with ``torch.load(weights_only=True)`` (DCVC's own ``get_state_dict``
leaves ``weights_only`` to torch's default). One that holds more than tensors is refused at
plan time, naming its SHA-256; ``trust_checkpoint=<sha256>`` (``:``-separated for several)
allows a full unpickling of exactly that file, and is recorded with the results. The files'
SHA-256 are part of ``identity()``, so a changed checkpoint redoes the jobs.

**Availability** (``bench doctor``, ``bench codecs``): the checkout, the checkpoints, and the
C++ coder, imported in a subprocess of this very Python (a module built for another Python
does not count); when it is missing the message gives the build command with this Python.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import io
import os
import signal
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench import progress
from bench.codec import (
    Codec,
    CodecError,
    CodecOption,
    CodecUnavailable,
    EncodeResult,
    Rate,
    RateError,
    RateSpec,
    Requirement,
    check_intra_period,
    is_intra_frame,
)
from bench.complexity import counted
from bench.video import Video

from .container import frame_sizes, read_container, write_container

# the folder that holds this package, for the children's PYTHONPATH
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


# --- the parent side: what bench sees ------------------------------------------------------------


class DCVCCodec(Codec):
    family: ClassVar[str]  # folder name in DCVC-family/
    image_weights: ClassVar[str]
    video_weights: ClassVar[str]
    #: "module:Class" of the code that runs in the family's child process
    runner: ClassVar[str]
    #: what must import for the C++ coder to count as built
    coder_modules: ClassVar[tuple[str, ...]] = ("src.models.MLCodec_rans", "src.models.MLCodec_CXX")
    pybind11_version: ClassVar[str] = ""
    extension = ".dcvc"
    native_code = True  # DCVC's C++ entropy coder runs in (a child of) the job's process
    learned = True
    rate_name = "q_index"
    # planes are scaled by the source's peak on the way in and quantised to the depth asked
    # for on the way out, as DCVC's own YUVReader/YUVWriter do for 8 and 10 bits
    bit_depths = (8, 10)
    # DCVC's checkpoints are pickles, and trusting one lets it run code: data (a golden set)
    # may set none of these
    location_options = ("image_weights", "video_weights", "trust_checkpoint")

    @classmethod
    def options(cls) -> list[CodecOption]:
        return [
            CodecOption("--dcvc-root", "dcvc_root", "a checkout of microsoft/DCVC, for --codec dcvc-dc / dcvc-fm / dcvc-rt"),
            CodecOption("--dcvc-weights", "dcvc_weights", "folder of DCVC checkpoints (default: <dcvc-root>/DCVC-family/<model>/checkpoints)"),
        ]

    def __init__(
        self,
        *,
        dcvc_root: str | None = None,
        dcvc_weights: str | None = None,
        device: str = "cpu",
        intra_period: int = -1,
        image_weights: str | None = None,
        video_weights: str | None = None,
        trust_checkpoint: str | None = None,
    ):
        check_intra_period(intra_period)
        self.root = Path(dcvc_root).expanduser() if dcvc_root else None
        self.weights_dir = Path(dcvc_weights).expanduser() if dcvc_weights else None
        self.device = device
        self.intra_period = intra_period
        self.image_file = image_weights or self.image_weights
        self.video_file = video_weights or self.video_weights
        self.trusted = parse_trust(trust_checkpoint)

    # --- where things are ------------------------------------------------------------------------

    def model_dir(self) -> Path | None:
        if self.root is None:
            return None
        for d in (self.root, self.root / "DCVC-family" / self.family, self.root / self.family):
            if (d / "src" / "models" / "video_model.py").is_file():
                return d.resolve()
        return None

    def weights_folder(self) -> Path | None:
        md = self.model_dir()
        return self.weights_dir or (md / "checkpoints" if md else None)

    def weight_path(self, name: str) -> Path | None:
        folder = self.weights_folder()
        p = folder / name if folder else None
        return p if p is not None and p.is_file() else None

    def checkpoints(self) -> dict[str, Path | None]:
        return {name: self.weight_path(name) for name in (self.image_file, self.video_file)}

    # --- what it needs -----------------------------------------------------------------------------

    def requirements(self) -> list[Requirement]:
        md = self.model_dir()
        reqs = [
            Requirement(
                f"a checkout of microsoft/DCVC with {self.family}",
                md is not None,
                str(md) if md else (str(self.root) if self.root else "(no --dcvc-root given)"),
                "git clone https://github.com/microsoft/DCVC and pass --dcvc-root (dcvc_root=) pointing at it",
            )
        ]
        if md is not None:
            reqs.append(self.coder_requirement(md))
        folder = self.weights_folder()
        for name, path in self.checkpoints().items():
            reqs.append(
                Requirement(
                    f"{self.family} checkpoint {name}",
                    path is not None,
                    str(path or folder or "(no --dcvc-weights given)"),
                    f"download DCVC's pretrained models (see DCVC-family/{self.family}/README.md, 'Pretrained models') into {folder or '--dcvc-weights DIR'}",
                )
            )
            if path is not None:
                reqs.append(self.checkpoint_requirement(name, path))
        return reqs

    def coder_requirement(self, md: Path) -> Requirement:
        problem = coder_problem(md, self.coder_modules)
        where = str(md / "src" / "models") + ("" if problem is None else f": {problem}")
        return Requirement(f"{self.family}'s C++ entropy coder, built for this Python ({sys.executable})", problem is None, where, self.build_hint(md))

    def build_hint(self, md: Path) -> str:
        offline = f"pybind11 {self.pybind11_version} into build/3rdparty/pybind11/pybind11-src" + (
            " and ryg_rans into build/3rdparty/ryg_rans/ryg_rans-src" if self.family == "DCVC-DC" else ""
        )
        return (
            f"build it with this Python: cd {md / 'src'} && mkdir -p build && cd build && "
            f"cmake ../cpp -DCMAKE_BUILD_TYPE=Release -DPYTHON_EXECUTABLE={sys.executable} && make -j "
            f"(DCVC-family/{self.family}/README.md, 'Build the project'; without -DPYTHON_EXECUTABLE cmake builds for the first python on PATH; "
            f"offline, first copy {offline}; with CMake 4 add -DCMAKE_POLICY_VERSION_MINIMUM=3.5)"
        )

    def checkpoint_requirement(self, name: str, path: Path) -> Requirement:
        sha = _file_digest(path)
        problem = None if sha in self.trusted else weights_only_problem(path)
        return Requirement(
            f"{self.family} checkpoint {name} loadable with weights_only=True" + (" (trusted by its SHA-256)" if sha in self.trusted else ""),
            problem is None,
            f"{path} (SHA-256 {sha})" + (f": {problem}" if problem else ""),
            f"it holds more than tensors, and unpickling it may run code. If it is Microsoft's file, from the link in "
            f"DCVC-family/{self.family}/README.md, allow exactly this file with {self.name}:trust_checkpoint={sha} (recorded with the results)",
        )

    # --- identity and manifest -----------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        md = self.model_dir()
        return {
            "codec": self.name,
            "family": self.family,
            "device": self.device,
            "intra_period": self.intra_period,
            "checkpoints": {name: _file_digest(p) if p else None for name, p in self.checkpoints().items()},
            "source_sha256": source_digest(md) if md else None,
            **self.runner_options(),
            **self.encode_options(),
        }

    def runner_options(self) -> dict[str, Any]:
        """A family's own options that its child process loads its networks with."""
        return {}

    def encode_options(self) -> dict[str, Any]:
        """A family's own options that each encode takes."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            **self.identity(),
            "model_dir": str(self.model_dir()) if self.model_dir() else None,
            "weights": [str(p) for p in self.checkpoints().values()],
            "trust_checkpoint": sorted(self.trusted) or None,
        }

    # --- protocol ------------------------------------------------------------------------------------

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        q = self.parse_rate(rate)
        path = Path(workdir) / f"{self.name}_q{q}{self.extension}"
        planes = tuple(np.array(p) for p in (video.y, video.u, video.v))
        out = self._child().call(
            "encode", planes=planes, bit_depth=video.bit_depth, fps=video.fps, q=q, path=str(path), intra_period=self.intra_period, **self.encode_options()
        )
        self._flops += out.get("flops", 0)
        rec = Video(*out["planes"], bit_depth=video.bit_depth, fps=video.fps) if out.get("planes") else None
        return EncodeResult(path, frame_bytes=out["frame_bytes"], frame_types=out["frame_types"], reconstruction=rec, tools={"dcvc": str(self.model_dir())})

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        out = self._child().call("decode", path=str(path), bit_depth=bit_depth)
        self._flops += out.get("flops", 0)
        return Video(*out["planes"], bit_depth=out["bit_depth"], fps=out["fps"])

    _flops = 0  # counted in the child (bench.complexity), taken by the harness after each call

    def take_counted_flops(self) -> int:
        flops, self._flops = self._flops, 0
        return flops

    def _child(self) -> _Child:
        """The family's process for this checkout, checkpoints and device (started once per
        process that runs jobs, and again after a crash)."""
        self.check()
        import torch

        init = {
            "target": self.runner,
            "model_dir": str(self.model_dir()),
            "checkpoints": [(str(p), _file_digest(p), _file_digest(p) in self.trusted) for p in self.checkpoints().values()],
            "device": self.device,
            "threads": torch.get_num_threads(),
            "build_hint": self.build_hint(self.model_dir()),
            **self.runner_options(),
        }
        key = repr(sorted(init.items()))
        child = _CHILDREN.get(key)
        if child is None or child.proc.poll() is not None:
            child = _CHILDREN[key] = _Child(self.family, init)
        return child


class DCVCFM(DCVCCodec):
    name = "dcvc-fm"
    family = "DCVC-FM"
    image_weights = "cvpr2024_image.pth.tar"
    video_weights = "cvpr2024_video.pth.tar"
    runner = "baselines.dcvc:FMRunner"
    pybind11_version = "v2.10.4"
    # linspace(0, 63, 4) rounded, as its test_video.py's default --rate_num 4; 63 the highest rate
    default_rates = (63, 42, 21, 0)
    rate_spec = RateSpec("int", 0, 63)


class DCVCDC(DCVCCodec):
    name = "dcvc-dc"
    family = "DCVC-DC"
    image_weights = "cvpr2023_image_yuv420_psnr.pth.tar"
    video_weights = "cvpr2023_video_yuv420_psnr.pth.tar"
    runner = "baselines.dcvc:DCRunner"
    pybind11_version = "v2.9.2"
    default_rates = (63, 42, 21, 0)
    rate_spec = RateSpec("int", 0, 63)

    def __init__(
        self,
        *,
        dcvc_root: str | None = None,
        dcvc_weights: str | None = None,
        device: str = "cpu",
        intra_period: int = -1,
        image_weights: str | None = None,
        video_weights: str | None = None,
        trust_checkpoint: str | None = None,
        q_in_ckpt: bool = False,
    ):
        # spelled out: the harness reads a codec's options from its signature
        super().__init__(
            dcvc_root=dcvc_root,
            dcvc_weights=dcvc_weights,
            device=device,
            intra_period=intra_period,
            image_weights=image_weights,
            video_weights=video_weights,
            trust_checkpoint=trust_checkpoint,
        )
        if not isinstance(q_in_ckpt, bool):
            raise ValueError(f"q_in_ckpt must be true or false, got {q_in_ckpt!r}")
        self.q_in_ckpt = q_in_ckpt
        if q_in_ckpt:  # the checkpoint's own 4 anchors, as test_video.py's default --rate_num 4
            self.default_rates = (3, 2, 1, 0)
            self.rate_spec = RateSpec("int", 0, 3)

    def parse_rate(self, text: str | Rate) -> Rate:
        try:
            return super().parse_rate(text)
        except RateError as e:
            raise RateError(
                f"{e} ({'q_in_ckpt=true: the checkpoint’s 4 anchors' if self.q_in_ckpt else 'q_in_ckpt=false: 64 interpolated q scales'})"
            ) from None

    def encode_options(self) -> dict[str, Any]:
        return {"q_in_ckpt": self.q_in_ckpt}


# --- checks that run in the parent -----------------------------------------------------------------


def parse_trust(value: Any) -> frozenset[str]:
    """``trust_checkpoint``: SHA-256 digests, ``:``-separated (``,`` separates codecs on the
    command line)."""
    if value in (None, ""):
        return frozenset()
    digests = [d.strip().lower() for d in str(value).replace(",", ":").split(":") if d.strip()]
    bad = [d for d in digests if len(d) != 64 or any(c not in "0123456789abcdef" for c in d)]
    if bad:
        raise ValueError(f"trust_checkpoint takes the SHA-256 of the checkpoint (64 hex digits; several separated by ':'), not {', '.join(bad)}")
    return frozenset(digests)


_CACHE: dict[tuple, Any] = {}


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def weights_only_problem(path: Path) -> str | None:
    """None if ``torch.load(path, weights_only=True)`` accepts the file, else torch's reason.
    Memory-mapped, so only the pickle is read (a legacy non-zip file is read whole)."""
    key = ("weights_only", *_file_key(path))
    if key not in _CACHE:
        import torch

        try:
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                torch.load(path, map_location="cpu", weights_only=True)
            _CACHE[key] = None
        except Exception as e:  # torch's UnpicklingError: the line that names what it refused
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            why = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[-1] if lines else type(e).__name__)
            _CACHE[key] = why.split(". Please use")[0][:300]
    return _CACHE[key]


_PROBE = """
import importlib, importlib.machinery, importlib.util, sys
spec = importlib.machinery.ModuleSpec("src", None, is_package=True)
spec.submodule_search_locations = [sys.argv[1] + "/src"]
sys.modules["src"] = importlib.util.module_from_spec(spec)
for name in sys.argv[2:]:
    importlib.import_module(name)
"""


def coder_problem(model_dir: Path, modules: tuple[str, ...]) -> str | None:
    """None if DCVC's C++ coder imports in a fresh process of this Python, else why not. A
    subprocess, because the coder cannot be unloaded and two families' coders cannot share
    a process; remembered per build (the modules' files and times)."""
    built = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in (model_dir / "src" / "models").glob("MLCodec_*")))
    key = ("coder", str(model_dir), modules, built)
    if key not in _CACHE:
        r = subprocess.run([sys.executable, "-c", _PROBE, str(model_dir), *modules], capture_output=True, text=True, timeout=300, env=_child_env())
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        _CACHE[key] = None if r.returncode == 0 else (lines[-1] if lines else f"exit status {r.returncode}")
    return _CACHE[key]


def _file_digest(path: str | os.PathLike) -> str:
    # bench.store imports pandas, which the child process (it imports this module) never needs
    from bench.store import file_digest

    return file_digest(path)


def source_digest(model_dir: Path) -> str:
    """SHA-256 (16 hex) of the model's Python source: a changed checkout redoes the jobs."""
    files = sorted((model_dir / "src").rglob("*.py"))
    key = ("source", str(model_dir), tuple(_file_key(p) for p in files))
    if key not in _CACHE:
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(model_dir)).encode() + b"\0" + p.read_bytes())
        _CACHE[key] = h.hexdigest()[:16]
    return _CACHE[key]


# --- the child process -------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    # this package first (the child imports baselines.dcvc); DCVC's test scripts set the cuBLAS
    # workspace so that deterministic algorithms may run on CUDA
    path = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


class _Child:
    """A process running one DCVC family's code (``serve``), fed one request at a time over a
    socket. A subprocess, not multiprocessing: the bench worker that owns it is a daemon,
    and daemons may not start multiprocessing children."""

    def __init__(self, family: str, init: dict):
        self.family = family
        ours, theirs = socket.socketpair()
        code = "import sys; from baselines.dcvc import serve; serve(int(sys.argv[1]))"
        # DCVC prints to stdout; the protocol is the socket, so its prints go to stderr
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())], pass_fds=(theirs.fileno(),), stdout=2, env=_child_env())
        theirs.close()
        self.conn = Connection(ours.detach())
        self.call("init", **init)

    def call(self, op: str, **kwargs: Any) -> Any:
        try:
            self.conn.send((op, kwargs))
            kind, value = self.conn.recv()
            while kind == "progress":  # frames the child has coded: the job's bar follows them
                progress.reach(value)
                kind, value = self.conn.recv()
        except (EOFError, OSError) as e:
            raise CodecError(f"the {self.family} process ended during {op} ({self._exit()}); DCVC's native code crashed or ran out of memory") from e
        except BaseException:  # interrupted mid-answer: its unread messages would answer the next call
            self.proc.kill()
            raise
        if kind == "ok":
            return value
        unavailable, message = value
        raise (CodecUnavailable if unavailable else CodecError)(message)

    def _exit(self) -> str:
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "it stopped answering and was killed"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

    def close(self) -> None:
        self.conn.close()  # the child sees EOF and returns
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_CHILDREN: dict[str, _Child] = {}


@atexit.register
def _close_children() -> None:
    for child in _CHILDREN.values():
        child.close()
    _CHILDREN.clear()


def serve(fd: int) -> None:
    """The child's loop: ``init`` builds the runner, then each request calls one of its methods.
    Each frame the runner codes goes back to the job before the answer (bench.progress)."""
    conn = Connection(fd)
    runner = None
    progress.MAX_RATE = float("inf")  # every frame: the job's process limits what it shows
    with progress.sink(lambda event: conn.send(("progress", event.done))):
        while True:
            try:
                op, kwargs = conn.recv()
            except EOFError:
                return
            try:
                if op == "init":
                    module, _, cls = kwargs.pop("target").partition(":")
                    runner = getattr(importlib.import_module(module), cls)(**kwargs)
                    result = None
                else:
                    # the networks run here, not in the job; the job's stage has the total
                    with counted(op in ("encode", "decode")) as count, progress.job(op), progress.stage(op, 1 << 31):
                        result = getattr(runner, op)(**kwargs)
                    if isinstance(result, dict) and count.flops:
                        result["flops"] = count.flops
                conn.send(("ok", result))
            except Exception as e:  # sent back as text: it may not pickle
                tb = traceback.format_exc().strip().splitlines()[-12:]
                message = str(e) if isinstance(e, CodecUnavailable) else f"{type(e).__name__}: {e}\n" + "\n".join(tb)
                conn.send(("error", (isinstance(e, CodecUnavailable), message)))


# --- the code that runs in the child -------------------------------------------------------------------


def guard_cuda_synchronize() -> None:
    """DCVC-FM's and DCVC-DC's P-frame coding call ``torch.cuda.synchronize(device=x.device)``
    to time themselves, whatever the device; on the CPU that raises. A child that runs on the
    CPU makes the call a no-op for non-CUDA devices (and keeps it for CUDA ones)."""
    import torch

    real = torch.cuda.synchronize

    def synchronize(device=None):
        if device is not None and torch.device(device).type != "cuda":
            return None
        return real(device)

    torch.cuda.synchronize = synchronize


def load_checkpoint(path: str, sha256: str, trusted: bool) -> dict:
    """The state dict as DCVC's ``get_state_dict`` unwraps it, from exactly the bytes the plan
    hashed; ``weights_only=True`` unless the plan's ``trust_checkpoint`` named this file."""
    import torch
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    data = Path(path).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise CodecError(f"{path} changed after the sweep was planned (SHA-256 {got}, planned {sha256}): run the sweep again")
    ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=not trusted)
    for key in ("state_dict", "net"):
        if key in ckpt:
            ckpt = ckpt[key]
    consume_prefix_in_state_dict_if_present(ckpt, prefix="module.")
    return ckpt


class Runner:
    """A DCVC family's networks in the child process, set up as its test script's
    ``init_func`` does, and the frame conversions both families share."""

    modules: ClassVar[tuple[str, ...]]
    pad_multiple = 16

    def __init__(self, *, model_dir: str, checkpoints: list, device: str, threads: int, build_hint: str):
        import torch

        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(0)
        torch.set_num_threads(threads)
        np.random.seed(0)
        if not device.startswith("cuda"):
            guard_cuda_synchronize()
        self.device = device
        self.m = import_src(Path(model_dir), self.modules)
        try:
            self.i_net, self.p_net = self.load(*[load_checkpoint(*c) for c in checkpoints])
        except ImportError as e:  # the coder is imported inside update()
            raise CodecUnavailable(f"{model_dir}: DCVC's C++ entropy coder does not import ({e}); {build_hint}") from e

    def net(self, net, state_dict):
        net.load_state_dict(state_dict)
        return net.to(self.device).eval()

    def to_444(self, planes, i: int, peak: int):
        """Frame i as DCVC's (1, 3, H, W) tensor in [0, 1], padded by replication."""
        import torch
        import torch.nn.functional as F

        f = self.m["transforms.functional"]
        y = planes[0][i][None].astype(np.float32) / peak
        uv = np.stack([planes[1][i], planes[2][i]]).astype(np.float32) / peak
        x = torch.from_numpy(np.ascontiguousarray(f.ycbcr420_to_444(y, uv, order=0)))[None].to(self.device)
        pads = self.pads(*planes[0].shape[1:])
        return F.pad(x, pads, mode="replicate"), pads

    def pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        return tuple(self.m["utils.stream_helper"].get_padding_size(h, w, self.pad_multiple))

    def to_420(self, x, pads, bit_depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch.nn.functional as F

        left, right, top, bottom = pads
        x = F.pad(x.clamp(0, 1), (-left, -right, -top, -bottom))
        y, uv = self.m["transforms.functional"].ycbcr444_to_420(x[0].float().cpu().numpy())
        return quantise(y[0], bit_depth), quantise(uv[0], bit_depth), quantise(uv[1], bit_depth)


def quantise(plane, bit_depth: int) -> np.ndarray:
    """[0, 1] samples to integers, as DCVC's YUVWriter does (``rint``, clipped)."""
    peak = (1 << bit_depth) - 1
    return np.clip(np.rint(np.asarray(plane) * peak), 0, peak).astype(np.uint8 if bit_depth == 8 else np.uint16)


def stack(planes: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.stack(p) for p in zip(*planes))


def import_src(model_dir: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The checkout's ``src`` modules. DCVC's folders have no ``__init__.py`` (namespace
    packages), so ``src`` is made the model folder's package explicitly: no other ``src`` on
    sys.path can take its place. It stays loaded: DCVC imports its coder from it later."""
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.ModuleSpec("src", None, is_package=True)
    spec.submodule_search_locations = [str(model_dir / "src")]
    sys.modules["src"] = importlib.util.module_from_spec(spec)
    return {name: importlib.import_module(f"src.{name}") for name in names}


def intra_dpb(x_hat) -> dict:
    """DCVC-FM's and -DC's decoded-picture buffer after an intra frame."""
    return {"ref_frame": x_hat, "ref_feature": None, "ref_mv_feature": None, "ref_y": None, "ref_mv_y": None}


class FMRunner(Runner):
    """DCVC-FM as ``src/utils/test_helper.py``'s ``run_one_point_with_stream`` runs it."""

    modules = ("models.image_model", "models.video_model", "utils.stream_helper", "transforms.functional")
    RESET_INTERVAL, RATE_GOP, INDEX_MAP = 32, 8, (0, 1, 0, 2, 0, 2, 0, 2)

    def load(self, i_sd, p_sd):
        m = self.m
        i_net = self.net(m["models.image_model"].DMCI(ec_thread=False, stream_part=1, inplace=True), i_sd)
        p_net = self.net(m["models.video_model"].DMC(ec_thread=False, stream_part=1, inplace=True), p_sd)
        p_net.update(force=True)
        i_net.update(force=True)
        return i_net, p_net

    def encode(self, *, planes, bit_depth, fps, q, path, intra_period):
        import torch

        sh = self.m["utils.stream_helper"]
        h, w = planes[0].shape[1:]
        sps_helper, out_planes, dpb, sizes, types = sh.SPSHelper(), [], None, [], []
        with open(path, "wb") as out, torch.no_grad():
            for i in range(len(planes[0])):
                start = out.tell()
                x, pads = self.to_444(planes, i, (1 << bit_depth) - 1)
                intra = is_intra_frame(i, intra_period)
                fa_idx = 0 if intra else self.INDEX_MAP[i % self.RATE_GOP]
                if not intra and i % self.RESET_INTERVAL == 1:
                    dpb["ref_feature"], fa_idx = None, 3
                sps = {"sps_id": -1, "height": h, "width": w, "qp": q, "fa_idx": fa_idx}
                sps["sps_id"], new = sps_helper.get_sps_id(sps)
                if new:
                    sh.write_sps(out, sps)
                if intra:
                    dpb = intra_dpb(self.i_net.encode(x, q, sps["sps_id"], out)["x_hat"])
                else:
                    dpb = self.p_net.encode(x, dpb, q, fa_idx, sps["sps_id"], out)["dpb"]
                sizes.append(out.tell() - start)  # a new SPS counts in the frame that needs it
                types.append("I" if intra else "P")
                out_planes.append(self.to_420(dpb["ref_frame"], pads, bit_depth))
                progress.advance(1)
        return {"frame_bytes": sizes, "frame_types": types, "planes": stack(out_planes)}

    def decode(self, *, path, bit_depth):
        import torch

        bit_depth = bit_depth or 8  # DCVC-FM's stream does not say
        out_planes, dpb = [], None
        with open(path, "rb") as f, torch.no_grad():
            for header, sps, bit_stream in self.frames(f, Path(path).stat().st_size):
                if header["nal_type"] == self.m["utils.stream_helper"].NalType.NAL_I:
                    dpb = intra_dpb(self.i_net.decompress(bit_stream, sps)["x_hat"])
                elif dpb is None:
                    raise CodecError(f"{path}: a P frame before any I frame")
                else:
                    if sps["fa_idx"] == 3:
                        dpb["ref_feature"] = None
                    dpb = self.p_net.decompress(bit_stream, dpb, sps)["dpb"]
                h, w = sps["height"], sps["width"]
                out_planes.append(self.to_420(dpb["ref_frame"], self.pads(h, w), bit_depth))
                progress.advance(1)
        if not out_planes:
            raise CodecError(f"{path}: no frames in the DCVC-FM stream")
        return {"planes": stack(out_planes), "bit_depth": bit_depth, "fps": 25.0}  # the stream carries no frame rate

    def frames(self, f, size: int):
        """(header, sps, bit stream) per frame, reading SPS units as test_helper.py does (a
        NAL_Ps unit holds several frames' SPS ids and one stream)."""
        sh = self.m["utils.stream_helper"]
        sps_helper, pending, header = sh.SPSHelper(), [], None
        while pending or f.tell() < size:
            if pending:
                yield header, sps_helper.get_sps_by_id(pending.pop(0)), None
                continue
            header = sh.read_header(f)
            if header["nal_type"] == sh.NalType.NAL_SPS:
                sps_helper.add_sps_by_id(sh.read_sps_remaining(f, header["sps_id"]))
                continue
            if header["nal_type"] == sh.NalType.NAL_Ps:
                sps_id, pending = header["sps_ids"][0], list(header["sps_ids"][1:])
            else:
                sps_id = header["sps_id"]
            sps = sps_helper.get_sps_by_id(sps_id)
            if sps is None:
                raise CodecError(f"frame refers to SPS {sps_id}, which the stream never sent")
            yield header, sps, sh.read_ip_remaining(f)


class DCRunner(Runner):
    """DCVC-DC as its ``test_video.py`` ``run_test`` runs it with ``--write_stream 1``."""

    modules = ("models.image_model", "models.video_model", "utils.stream_helper", "transforms.functional")

    def load(self, i_sd, p_sd):
        m = self.m
        i_net = self.net(m["models.image_model"].IntraNoAR(ec_thread=False, stream_part=1, inplace=True), i_sd)
        p_net = self.net(m["models.video_model"].DMC(ec_thread=False, stream_part=1, inplace=True), p_sd)
        p_net.update(force=True)
        i_net.update(force=True)
        return i_net, p_net

    def encode(self, *, planes, bit_depth, fps, q, path, intra_period, q_in_ckpt):
        import torch

        h, w = planes[0].shape[1:]
        tmp = Path(f"{path}.frame")  # encode_decode writes each frame's file, then decodes it
        frames, out_planes, types, dpb = [], [], [], None
        with torch.no_grad():
            for i in range(len(planes[0])):
                x, pads = self.to_444(planes, i, (1 << bit_depth) - 1)
                if is_intra_frame(i, intra_period):
                    dpb = intra_dpb(self.i_net.encode_decode(x, q_in_ckpt, q, str(tmp), pic_height=h, pic_width=w)["x_hat"])
                else:
                    dpb = self.p_net.encode_decode(x, dpb, q_in_ckpt, q, str(tmp), pic_height=h, pic_width=w, frame_idx=i % 4)["dpb"]
                frames.append([tmp.read_bytes()])
                types.append("I" if is_intra_frame(i, intra_period) else "P")
                out_planes.append(self.to_420(dpb["ref_frame"], pads, bit_depth))
                progress.advance(1)
        tmp.unlink(missing_ok=True)
        header = {"model": "dcvc-dc", "intra_period": intra_period, "bit_depth": bit_depth, "fps": fps}
        write_container(Path(path), header, frames)
        return {"frame_bytes": frame_sizes(frames), "frame_types": types, "planes": stack(out_planes)}

    def decode(self, *, path, bit_depth):
        import torch

        header, frames = read_container(Path(path))
        if header.get("model") != "dcvc-dc":
            raise CodecError(f"{path} was not written by dcvc-dc (header model {header.get('model')!r})")
        bit_depth = bit_depth or int(header["bit_depth"])
        sh, tmp = self.m["utils.stream_helper"], Path(f"{path}.frame")
        out_planes, dpb, size = [], None, None
        with torch.no_grad():
            for i, (data,) in enumerate(frames):
                tmp.write_bytes(data)
                if is_intra_frame(i, int(header["intra_period"])):
                    h, w, q_in_ckpt, q, stream = sh.decode_i(str(tmp))
                    dpb, size = intra_dpb(self.i_net.decompress(stream, h, w, q_in_ckpt, q)["x_hat"]), (h, w)
                else:  # a P frame's file has no picture size: the last I frame's
                    q_in_ckpt, q, frame_idx, stream = sh.decode_p(str(tmp))
                    dpb = self.p_net.decompress(dpb, stream, *size, q_in_ckpt, q, frame_idx)["dpb"]
                out_planes.append(self.to_420(dpb["ref_frame"], self.pads(*size), bit_depth))
                progress.advance(1)
        tmp.unlink(missing_ok=True)
        return {"planes": stack(out_planes), "bit_depth": bit_depth, "fps": float(header["fps"])}
