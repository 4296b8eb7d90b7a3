"""Our video → poses engine for DeepLabCut 3 PyTorch models, an adapter beside :mod:`.dlc`.

DeepLabCut's ``analyze_videos`` decodes, converts and normalises each frame in the main
process, one at a time, and copies every prediction back to the host frame by frame: on a
GPU the model waits most of the time. This engine runs the *same model* — built with
DeepLabCut's own classes (``DLCLoader``, ``PoseModel.build``, ``get_predictions``) from the
same snapshot — behind a pipeline that keeps the device busy:

- a background thread decodes with OpenCV (as DeepLabCut does, so the pixels are the same)
  straight into a ring of pinned uint8 batch buffers;
- each batch is copied to the device once, BGR→RGB and ImageNet normalisation are done there
  (the same float32 arithmetic as albumentations' ``Normalize``), then forward and
  ``get_predictions`` run on the device;
- one device→host copy per batch, overlapped with the next batch;
- the output files (``.h5``, ``_meta.pickle``, ``_full.pickle``, as DeepLabCut writes them)
  are written by a writer thread while the next video runs, under temporary names renamed
  only when complete.

It covers single-animal bottom-up models whose inference transform is ImageNet
normalisation (what DeepLabCut 3 creates for every single-animal net). Anything else —
multi-animal, top-down, resizing or cropping, dynamic cropping — is reported by
:func:`unsupported_reason` so that the caller falls back to ``analyze_videos``.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DeepLabCutError
from .video import VideoError

logger = logging.getLogger(__name__)

#: ``analyze_videos`` options this engine honours; any other option falls back to DeepLabCut.
ENGINE_OPTIONS = {"batch_size", "device", "save_as_csv", "channels_last", "compile"}
#: Of those, the ones ``analyze_videos`` does not take.
ENGINE_ONLY_OPTIONS = {"channels_last", "compile"}
#: The inference transforms this engine reproduces on the device.
SUPPORTED_TRANSFORMS = {"normalize_images"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CPU_BATCH = 8
MAX_GPU_BATCH = 64


@dataclass
class LoadedModel:
    """A DeepLabCut model ready for inference, with what the output files need."""

    model: object  # deeplabcut PoseModel, on ``device``, in eval mode
    device: object  # torch.device
    loader: object  # deeplabcut DLCLoader
    snapshot: Path
    scorer: str
    bodyparts: list[str]
    normalize: bool
    train_fraction: float
    autocast: bool = False  # pytorch_config's inference.autocast, as DeepLabCut's runner honours it
    channels_last: bool = False  # NHWC activations (faster convolutions on CPU)
    cudnn_benchmark: bool = False  # let cuDNN time its algorithms for our fixed frame size
    forward: object = None  # the model, or its torch.compile'd version
    compiled: bool = False
    mean: object = field(default=None)  # float32 tensors on device, per RGB channel, x255
    inv_std: object = field(default=None)


@dataclass
class VideoResult:
    """One analysed video: its outputs and how fast it went."""

    video: Path
    h5: Path
    nframes: int
    seconds: float

    @property
    def fps(self) -> float:
        """Frames per second over decode, inference and predictions (not file writing)."""
        return self.nframes / self.seconds if self.seconds else float("nan")


def unsupported_reason(model_cfg: dict, project_cfg: dict, options: dict) -> str | None:
    """Say why this engine cannot reproduce ``analyze_videos`` for a model, or None if it can.

    Parameters
    ----------
    model_cfg : dict
        The shuffle's ``pytorch_config.yaml``.
    project_cfg : dict
        The project's ``config.yaml``.
    options : dict
        The ``analyze_videos`` keyword arguments asked for.
    """
    if project_cfg.get("multianimalproject"):
        return "multi-animal project (assembly and tracking are DeepLabCut's)"
    if model_cfg.get("method", "bu").lower() != "bu":
        return f"{model_cfg.get('method')} model (only bottom-up models are covered)"
    if model_cfg.get("metadata", {}).get("unique_bodyparts"):
        return "unique body parts"
    heads = set(model_cfg.get("model", {}).get("heads", {}))
    if heads != {"bodypart"}:
        return f"heads {sorted(heads)} (only a single 'bodypart' head is covered)"
    transforms = {k for k, v in (model_cfg.get("data", {}).get("inference") or {}).items() if v}
    if transforms - SUPPORTED_TRANSFORMS:
        return f"inference transforms {sorted(transforms - SUPPORTED_TRANSFORMS)}"
    if project_cfg.get("cropping"):
        return "the project crops videos (cropping: true in config.yaml)"
    other = set(options) - ENGINE_OPTIONS
    if other:
        return f"analyze_videos options {sorted(other)}"
    return None


def resolve_device(device: str | None):
    """``auto``/None → CUDA when available, else CPU; anything else as given."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(
    config: Path,
    *,
    shuffle: int,
    trainingsetindex: int,
    snapshotindex: int,
    modelprefix: str = "",
    device: str | None = "auto",
    channels_last: bool | None = None,
    cudnn_benchmark: bool | None = None,
    compile: bool | str | None = None,
) -> LoadedModel:
    """Build a shuffle's model with DeepLabCut's classes and load one snapshot's weights.

    ``channels_last`` runs the model on NHWC activations; default: on CPU, off on a GPU.
    Measured with benchmarks/inference.py: on 2 CPU cores it made the forward pass 1.47x
    faster; on an H100 it made resnet_50 1.8x slower. ``cudnn_benchmark`` lets cuDNN time its
    algorithms for the frame size; it is off by default, because it gained nothing measurable
    on the H100. Both change only the order of floating-point sums. The outputs stay within
    float32 rounding of DeepLabCut's (3e-5 px on CPU, 6e-5 px on the H100). With
    ``channels_last=False`` they are bit-equal on CPU.

    ``compile`` runs the model through ``torch.compile``: True for the ``inductor`` backend,
    or a backend's name. The default is what ``inference.compile`` in pytorch_config.yaml
    says, as for ``analyze_videos``. On an H100, compiling DeepLabCut's resnet_50 took 21 s
    and made its forward pass 1.68x faster. That pays off on long recordings only: it needs
    about 40,000 frames (22 minutes at 30 fps) to win back those 21 s. Every batch then
    has the same size (the last one is padded), so the model is compiled once.

    Raises
    ------
    DeepLabCutError
        If the snapshot's weights do not fit the model that ``pytorch_config.yaml`` describes.
    """
    import torch

    from .dlc import _import_deeplabcut

    _import_deeplabcut()  # headless, offline, weights-only loading, as for every DeepLabCut call
    from deeplabcut.pose_estimation_pytorch.apis import utils as dlc_utils
    from deeplabcut.pose_estimation_pytorch.data import DLCLoader
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    loader = DLCLoader(
        Path(config), trainset_index=trainingsetindex, shuffle=shuffle, modelprefix=modelprefix
    )
    snapshot = dlc_utils.get_model_snapshots(snapshotindex, loader.model_folder, loader.pose_task)[0]
    model_cfg = loader.model_cfg
    if device is not None:
        model_cfg["device"] = device  # as analyze_videos does: the _meta.pickle records it
    dev = resolve_device(device)
    model = PoseModel.build(model_cfg["model"])
    # weights_only: a snapshot is data; the file was vetted by safe_io.check_snapshot too.
    state = torch.load(snapshot.path, map_location=dev, weights_only=True)
    try:
        model.load_state_dict(state["model"] if "model" in state else state)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0:3]
        raise DeepLabCutError(
            f"Snapshot {snapshot.path} does not fit the model described by "
            f"{loader.model_config_path}: {' '.join(first)}. Use the snapshot trained with this "
            "pytorch_config.yaml, or restore the config that trained it."
        ) from None
    model.to(dev).eval()
    if channels_last is None:
        channels_last = dev.type == "cpu"
    compile_cfg = (model_cfg.get("inference") or {}).get("compile") or {}
    if compile is None:
        compile = compile_cfg.get("backend", "inductor") if compile_cfg.get("enabled") else False
    backend = "inductor" if compile is True else compile
    if channels_last:
        model.to(memory_format=torch.channels_last)
    inference = model_cfg["data"].get("inference") or {}
    loaded = LoadedModel(
        model=model,
        device=dev,
        loader=loader,
        snapshot=Path(snapshot.path),
        scorer=loader.scorer(snapshot, None),
        bodyparts=list(model_cfg["metadata"]["bodyparts"]),
        normalize=bool(inference.get("normalize_images")),
        train_fraction=loader.project_cfg["TrainingFraction"][trainingsetindex],
        autocast=bool(((model_cfg.get("inference") or {}).get("autocast") or {}).get("enabled")),
        channels_last=channels_last,
        cudnn_benchmark=bool(cudnn_benchmark),
        forward=model,
    )
    if backend:
        try:
            loaded.forward = torch.compile(model, backend=backend)
            loaded.compiled = True
        except Exception as err:  # as DeepLabCut's runner: warn and run eagerly
            logger.warning("torch.compile(backend=%r) failed, running the model eagerly: %s", backend, err)
    # albumentations' Normalize: float32 mean*255 and float32 reciprocal of std*255.
    mean = np.array(IMAGENET_MEAN, dtype=np.float32) * np.float32(255.0)
    inv_std = np.reciprocal(np.array(IMAGENET_STD, dtype=np.float32) * np.float32(255.0), dtype=np.float32)
    loaded.mean = torch.from_numpy(mean).view(1, 3, 1, 1).to(dev)
    loaded.inv_std = torch.from_numpy(inv_std).view(1, 3, 1, 1).to(dev)
    return loaded


def choose_batch_size(loaded: LoadedModel, height: int, width: int) -> int:
    """Pick a batch size: 8 on CPU; on a GPU, what half the free memory holds (at most 64).

    The memory a frame needs is measured with one forward pass of a single frame.
    """
    import torch

    if loaded.device.type != "cuda":
        return CPU_BATCH
    torch.cuda.synchronize(loaded.device)
    torch.cuda.reset_peak_memory_stats(loaded.device)
    before = torch.cuda.memory_allocated(loaded.device)
    frame = torch.zeros((1, height, width, 3), dtype=torch.uint8, device=loaded.device)
    with torch.inference_mode():
        _predict(loaded, frame, eager=True)
    torch.cuda.synchronize(loaded.device)
    per_frame = max(torch.cuda.max_memory_allocated(loaded.device) - before, 1)
    free, _total = torch.cuda.mem_get_info(loaded.device)
    fits = int(0.5 * free // per_frame)
    return int(max(1, min(MAX_GPU_BATCH, 2 ** int(np.log2(max(fits, 1))))))


def _predict(loaded: LoadedModel, frames_bgr, eager: bool = False):
    """Poses (B, individuals, K, 3) on the device from a (B, H, W, 3) uint8 BGR batch there."""
    # OpenCV decodes BGR; DeepLabCut's reader converts to RGB. DeepLabCut's batches reach the
    # model as contiguous NCHW float32: the same layout gives bit-equal outputs on CPU.
    x = frames_bgr[..., [2, 1, 0]].permute(0, 3, 1, 2)  # a channels-last view
    x = (x if loaded.channels_last else x.contiguous()).float()
    if loaded.normalize:  # in place: the same float32 operations, two fewer frame-sized buffers
        x.sub_(loaded.mean).mul_(loaded.inv_std)
    model = loaded.model
    forward = model if eager else loaded.forward
    if loaded.autocast:
        import torch

        with torch.autocast(device_type=loaded.device.type):
            return model.get_predictions(forward(x))["bodypart"]["poses"]
    return model.get_predictions(forward(x))["bodypart"]["poses"]


def _video_shape(path: Path) -> tuple[int, int, int]:
    """Width, height and the frame count the header gives (0 if none), read by OpenCV."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"OpenCV cannot open {path}; is it a video file?")
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()
    if width <= 0 or height <= 0:
        raise VideoError(f"{path} reports frames of {width}x{height}; is it a video file?")
    return width, height, count


class _Decoder(threading.Thread):
    """Decode a video with OpenCV into a ring of (pinned, when on CUDA) uint8 batch buffers.

    Filled buffers go to ``full`` as ``(first frame, frames, buffer)``; the consumer hands each
    back through ``free``. ``(index, 0, None)`` ends the stream, ``(index, -1, error)`` reports
    a failure. Setting ``stop`` ends the thread within 0.1 s of its current batch.
    """

    def __init__(self, path: Path, shape: tuple[int, int], batch: int, pin: bool, buffers: int = 4):
        super().__init__(daemon=True, name=f"decode {path.name}")
        import cv2
        import torch

        self.cap = cv2.VideoCapture(str(path))
        self.batch = batch
        width, height = shape
        self.free: queue.Queue = queue.Queue()
        for _ in range(buffers):
            self.free.put(torch.empty((batch, height, width, 3), dtype=torch.uint8, pin_memory=pin))
        self.full: queue.Queue = queue.Queue()  # never more than `buffers` batches: no bound needed
        self.stop = threading.Event()

    def run(self):
        index = 0
        try:
            while not self.stop.is_set():
                try:
                    buf = self.free.get(timeout=0.1)
                except queue.Empty:
                    continue
                view = buf.numpy()
                n = 0
                while n < self.batch and self.cap.read(view[n])[0]:  # decodes in place
                    n += 1
                if n:
                    self.full.put((index, n, buf))
                    index += n
                if n < self.batch:
                    break
            self.full.put((index, 0, None))
        except Exception as err:  # handed to the consumer, which raises it with the file named
            self.full.put((index, -1, err))
        finally:
            self.cap.release()


def analyze_video(
    loaded: LoadedModel, video: Path, batch_size: int | None = None
) -> tuple[np.ndarray, float, int]:
    """Run the model over every frame of one video.

    Returns
    -------
    poses : ndarray
        float32 (frames, body parts, 3): x, y, likelihood, as DeepLabCut's ``.h5`` holds them.
    seconds : float
        Wall time of decode + inference.
    batch_size : int
        The batch size used.

    Raises
    ------
    VideoError
        If the video cannot be opened, or stops decoding before the frame count its header
        gives (truncated or corrupt): the message names the file and the frame.
    """
    import torch

    start = time.perf_counter()
    cuda = loaded.device.type == "cuda"
    width, height, expected = _video_shape(video)
    batch = int(batch_size or choose_batch_size(loaded, height, width))
    decoder = _Decoder(video, (width, height), batch, pin=cuda)
    decoder.start()
    k = len(loaded.bodyparts)
    # The header's count sizes the array; a container without one (or an undercount) grows it,
    # as analyze_videos keeps every frame it decodes.
    poses = np.empty((max(expected, batch), k, 3), dtype=np.float32)
    pending: list = []  # (event, host tensor, start index, n) of batches still being copied back
    done = 0

    def drain(keep: int):
        nonlocal done, poses
        while len(pending) > keep:
            event, host, first, n = pending.pop(0)
            if event is not None:
                event.synchronize()
            if first + n > len(poses):
                poses = np.concatenate([poses, np.empty((max(len(poses), n), k, 3), dtype=np.float32)])
            poses[first : first + n] = host.numpy()[:n, 0]
            done = max(done, first + n)

    cudnn = torch.backends.cudnn
    flags = cudnn.flags(
        enabled=cudnn.enabled,
        benchmark=loaded.cudnn_benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=cudnn.allow_tf32,
    )
    try:
        with torch.inference_mode(), flags:
            while True:
                first, n, buf = decoder.full.get()
                if n == -1:
                    raise VideoError(f"{video}: decoding failed at frame {first}: {buf}") from buf
                if n == 0:
                    break
                # A compiled model sees one batch shape: the last batch is run whole (the rows
                # past n hold older frames, and their poses are dropped).
                rows = buf if loaded.compiled else buf[:n]
                if cuda:
                    frames = rows.to(loaded.device, non_blocking=True)
                    released = torch.cuda.Event()
                    released.record()
                else:
                    frames = rows
                pred = _predict(loaded, frames)
                if cuda:
                    host = torch.empty(pred.shape, dtype=pred.dtype, pin_memory=True)
                    host.copy_(pred, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                    released.synchronize()  # the upload is done long before: the buffer is free
                else:
                    host, event = pred, None
                decoder.free.put(buf)
                pending.append((event, host, first, n))
                drain(keep=1)
            drain(keep=0)
    finally:
        decoder.stop.set()
        decoder.join()
    if done == 0:
        raise VideoError(f"{video}: no frame could be decoded; is it a video file, and complete?")
    if done < expected:
        raise VideoError(
            f"{video} stopped decoding at frame {done} of the {expected} its header gives: the file "
            "is truncated or corrupt. Restore it, or re-encode what is readable (ffmpeg -i IN "
            "-c:v libx264 -crf 18 OUT.mp4) and register that file instead."
        )
    return poses[:done], time.perf_counter() - start, batch


def output_frame(poses: np.ndarray, scorer: str, bodyparts: list[str]):
    """Build the DataFrame DeepLabCut's ``create_df_from_prediction`` writes (single animal)."""
    import pandas as pd

    columns = pd.MultiIndex.from_product(
        [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    return pd.DataFrame(poses.reshape(len(poses), -1), columns=columns, index=range(len(poses)))


def write_outputs(
    loaded: LoadedModel,
    video: Path,
    output_dir: Path,
    poses: np.ndarray,
    runtime: tuple[float, float],
    batch_size: int,
    save_as_csv: bool = False,
) -> Path:
    """Write ``<stem><scorer>.h5``, ``_meta.pickle`` and ``_full.pickle`` as DeepLabCut does.

    Each file is written under a temporary name first and all are renamed at the end: a
    failure leaves the earlier outputs (or none), never a half-written file.
    """
    from deeplabcut.pose_estimation_pytorch.apis import videos as dlc_videos
    from deeplabcut.utils import auxiliaryfunctions

    prefix = video.stem + loaded.scorer
    final = {
        "h5": output_dir / f"{prefix}.h5",
        "meta": output_dir / f"{prefix}_meta.pickle",
        "full": output_dir / f"{prefix}_full.pickle",
    }
    if save_as_csv:
        final["csv"] = output_dir / f"{prefix}.csv"
    tmp = {name: path.with_name(f".{path.name}.{os.getpid()}.tmp") for name, path in final.items()}
    try:
        iterator = dlc_videos.VideoIterator(video)
        metadata = dlc_videos._generate_metadata(
            cfg=loaded.loader.project_cfg,
            pytorch_config=loaded.loader.model_cfg,
            dlc_scorer=loaded.scorer,
            train_fraction=loaded.train_fraction,
            batch_size=batch_size,
            cropping=None,
            runtime=runtime,
            video=iterator,
        )
        iterator.close()
        with tmp["meta"].open("wb") as fh:
            pickle.dump(metadata, fh, pickle.HIGHEST_PROTOCOL)
        pose_cfg = auxiliaryfunctions.read_plainconfig(
            loaded.loader.model_folder.parent / "test" / "pose_cfg.yaml"
        )
        predictions = [{"bodyparts": frame[None]} for frame in poses]
        with tmp["full"].open("wb") as fh:
            pickle.dump(dlc_videos._generate_output_data(pose_cfg, predictions), fh, pickle.HIGHEST_PROTOCOL)
        frame = output_frame(poses, loaded.scorer, loaded.bodyparts)
        frame.to_hdf(tmp["h5"], key="df_with_missing", format="table", mode="w")
        if save_as_csv:
            frame.to_csv(tmp["csv"])
        for name, path in tmp.items():
            path.replace(final[name])
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    return final["h5"]


def analyze_videos(
    config: Path,
    videos: list[Path],
    output_dir: Path,
    *,
    shuffle: int,
    trainingsetindex: int,
    snapshotindex: int,
    modelprefix: str = "",
    batch_size: int | None = None,
    device: str | None = "auto",
    save_as_csv: bool = False,
    loaded: LoadedModel | None = None,
    channels_last: bool | None = None,
    cudnn_benchmark: bool | None = None,
    compile: bool | str | None = None,
) -> list[VideoResult]:
    """Analyse videos back to back with one loaded model, writing DeepLabCut's output files.

    The files of video *i* are written by a writer thread while video *i + 1* runs. If any
    video fails, nothing more is written for it or after it, and the error names the file.

    Parameters
    ----------
    config : Path
        The project's ``config.yaml``.
    videos : list of Path
        Videos to analyse, in order.
    output_dir : Path
        Where the output files go (created if missing).
    shuffle, trainingsetindex, snapshotindex : int
        Which model and snapshot (``snapshotindex`` -1: the last).
    modelprefix : str
        DeepLabCut model prefix.
    batch_size : int, optional
        Frames per batch; default 8 on CPU, chosen from free memory on a GPU.
    device : str, optional
        ``auto`` (default), ``cpu``, ``cuda``, ``cuda:1``...
    save_as_csv : bool
        Also write the ``.csv`` DeepLabCut writes with this option.
    loaded : LoadedModel, optional
        A model already loaded with :func:`load_model` (benchmarks reuse one).
    channels_last, cudnn_benchmark : bool, optional
        Layout and cuDNN settings (see :func:`load_model`).
    compile : bool or str, optional
        ``torch.compile`` the model (see :func:`load_model`).

    Returns
    -------
    list of VideoResult
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    if loaded is None:
        loaded = load_model(
            config,
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            snapshotindex=snapshotindex,
            modelprefix=modelprefix,
            device=device,
            channels_last=channels_last,
            cudnn_benchmark=cudnn_benchmark,
            compile=compile,
        )
    results: list[VideoResult] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="write") as writer:
        writes = []
        for video in videos:
            began = time.time()
            poses, seconds, batch = analyze_video(loaded, Path(video), batch_size)
            runtime = (began, time.time())
            writes.append(
                (
                    video,
                    seconds,
                    len(poses),
                    writer.submit(
                        write_outputs, loaded, Path(video), output_dir, poses, runtime, batch, save_as_csv
                    ),
                )
            )
            logger.info(
                "%s: %d frames at %.1f fps (batch %d, %s)",
                video,
                len(poses),
                len(poses) / seconds,
                batch,
                loaded.device,
            )
        for video, seconds, n, future in writes:
            results.append(VideoResult(Path(video), future.result(), n, seconds))
    return results
