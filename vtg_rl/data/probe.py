"""Open every video before hours are spent on it: real duration, frame count and fps, cached.

:func:`probe_video` opens one file with PyAV, reads every video packet (no full decode: cheap even for
long videos), decodes the first frame and the whole last group of pictures, and returns
:class:`VideoFacts`: whether the file is usable and, if so, its real duration, frame count and fps.
A file is unusable when it is missing, empty (0 bytes), not a media file, has no video stream
(audio-only), is cut short (truncated: the container or its last frames cannot be read) or holds fewer
than :data:`MIN_FRAMES` frames.

:class:`ProbeCache` keeps the facts in a small json file keyed by the file's real path, size and mtime,
so a second run over the same videos opens nothing (default: ``$VTG_RL_CACHE_DIR`` or
``$XDG_CACHE_HOME/vtg_rl`` / ``~/.cache/vtg_rl``, file ``video_probe.json``).

:func:`video_problems` turns facts into :class:`~vtg_rl.data.validate.Problem` s with ``file:line`` and
qid, including a stated duration that differs from the real one by more than the tolerance
(``max(tolerance_s, tolerance_rel * real)``). :func:`preflight` is what recipes and agents call before
starting: policy ``error`` (default) refuses to start and lists the bad rows; ``skip`` drops them and
logs the count. :func:`is_probe_ok` answers for one video (for run-time checks in a collator).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from vtg_rl.data.schema import VTGSample, atomic_write_text
from vtg_rl.data.validate import Location, Problem

logger = logging.getLogger(__name__)

#: a video with fewer frames cannot be sampled into a temporal patch
MIN_FRAMES = 2
#: stated-vs-real duration: a difference up to max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_REL * real)
#: is accepted (releases round durations; containers add a frame or two)
DURATION_TOLERANCE_S = 1.0
DURATION_TOLERANCE_REL = 0.05
ON_BAD_VIDEO = ("error", "skip")
PROBE_VERSION = 1
CACHE_FILE = "video_probe.json"

# Problem kinds (also counted by `vtg-rl data check --probe-videos`).
VIDEO_MISSING = "video_missing"              # no such file (or not a regular file, e.g. a symlink loop)
VIDEO_EMPTY = "video_empty"                  # 0 bytes
VIDEO_UNDECODABLE = "video_undecodable"      # not a media file, truncated, or frames that do not decode
VIDEO_NO_STREAM = "video_no_stream"          # a media file without a video stream (audio-only)
VIDEO_TOO_SHORT = "video_too_short"          # fewer than MIN_FRAMES frames
DURATION_MISMATCH = "duration_mismatch"      # the stated duration is not the real one
PROBE_KINDS = (VIDEO_MISSING, VIDEO_EMPTY, VIDEO_UNDECODABLE, VIDEO_NO_STREAM, VIDEO_TOO_SHORT, DURATION_MISMATCH)


@dataclass
class VideoFacts:
    """What opening a video found. ``kind``/``reason`` are set when it is unusable (``ok`` False)."""

    path: str
    size: int = -1
    mtime_ns: int = -1
    ok: bool = False
    kind: Optional[str] = None
    reason: Optional[str] = None
    duration: Optional[float] = None
    frames: Optional[int] = None
    fps: Optional[float] = None


def _bad(path: str, kind: str, reason: str, size: int = -1, mtime_ns: int = -1) -> VideoFacts:
    return VideoFacts(path=path, size=size, mtime_ns=mtime_ns, ok=False, kind=kind, reason=reason)


def _stat(path: str):
    """``os.stat`` of a regular file, else ``(kind, reason)``; never raises (symlink loops included)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (VIDEO_MISSING, "no such video file")
    except OSError as err:  # ELOOP (a symlink loop), EACCES, ENAMETOOLONG, ...
        return (VIDEO_MISSING, f"cannot open the video file ({err.strerror or err})")
    import stat

    if not stat.S_ISREG(st.st_mode):
        return (VIDEO_MISSING, "not a regular file")
    return st


def probe_video(path: str | os.PathLike) -> VideoFacts:
    """Open ``path`` with PyAV and return its :class:`VideoFacts` (never raises for a bad file)."""
    import av

    path = str(path)
    st = _stat(path)
    if not isinstance(st, os.stat_result):
        return _bad(path, *st)
    size, mtime = st.st_size, st.st_mtime_ns
    if size == 0:
        return _bad(path, VIDEO_EMPTY, "the file is empty (0 bytes)", size, mtime)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                return _bad(path, VIDEO_NO_STREAM, "the file has no video stream", size, mtime)
            stream = container.streams.video[0]
            tb = stream.time_base
            n, first_pts, end_pts, decoded_first = 0, None, None, False
            gop: list = []  # packets since the last keyframe: decoded at the end to prove the tail reads
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None and packet.dts is None:
                    continue  # the demuxer's flush packet
                n += 1
                pts = packet.pts if packet.pts is not None else packet.dts
                first_pts = pts if first_pts is None else min(first_pts, pts)
                end = pts + (packet.duration or 0)
                end_pts = end if end_pts is None else max(end_pts, end)
                if not decoded_first:
                    decoded_first = bool(stream.codec_context.decode(packet))
                    continue
                if packet.is_keyframe:
                    gop = []
                gop.append(packet)
            if n < MIN_FRAMES:
                return _bad(path, VIDEO_TOO_SHORT, f"{n} frame(s); at least {MIN_FRAMES} are needed", size, mtime)
            tail = 0
            for packet in gop:
                tail += len(stream.codec_context.decode(packet))
            tail += len(stream.codec_context.decode(None))
            if not decoded_first and tail == 0:
                return _bad(path, VIDEO_UNDECODABLE, "no frame decodes", size, mtime)
            if gop and tail < len(gop) // 2:
                return _bad(path, VIDEO_UNDECODABLE,
                            f"the last {len(gop)} frames do not decode ({tail} did): truncated?", size, mtime)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            duration = float((end_pts - first_pts) * tb) if tb is not None and end_pts is not None else float("nan")
            fps = float(rate) if rate else (n / duration if duration > 0 else float("nan"))
            if not math.isfinite(duration) or duration <= 0:
                duration = n / fps if fps and math.isfinite(fps) else float("nan")
            if not (math.isfinite(duration) and duration > 0 and math.isfinite(fps) and fps > 0):
                return _bad(path, VIDEO_UNDECODABLE, "no usable timing (duration / frame rate)", size, mtime)
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as err:  # not a media file, truncated, ...
        return _bad(path, VIDEO_UNDECODABLE, f"cannot be decoded ({type(err).__name__}: {err})", size, mtime)
    return VideoFacts(path=path, size=size, mtime_ns=mtime, ok=True, duration=round(duration, 4), frames=n,
                      fps=round(fps, 4))


# --------------------------------------------------------------------------- cache
def default_cache_path() -> Path:
    root = os.environ.get("VTG_RL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vtg_rl")
    return Path(root) / CACHE_FILE


class ProbeCache:
    """Facts by real path, valid while the file's size and mtime are unchanged. ``hits`` / ``probed``
    count this instance's lookups; :meth:`save` writes the json atomically (only when something changed)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.hits = 0
        self.probed = 0
        self._dirty = False
        self._lock = threading.Lock()
        self.entries: dict[str, dict] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") == PROBE_VERSION and isinstance(data.get("videos"), dict):
                self.entries = data["videos"]
        except (OSError, ValueError):
            pass  # no cache yet, or an unreadable one: start afresh

    def get(self, path: str | os.PathLike) -> VideoFacts:
        real = os.path.realpath(path)
        st = _stat(real)
        if isinstance(st, os.stat_result):
            with self._lock:
                e = self.entries.get(real)
            if e is not None and e.get("size") == st.st_size and e.get("mtime_ns") == st.st_mtime_ns:
                self.hits += 1
                return VideoFacts(**{**e, "path": str(path)})
        facts = probe_video(real)
        self.probed += 1
        if facts.size >= 0:  # cache only what can be checked for staleness
            with self._lock:
                self.entries[real] = {**asdict(facts), "path": real}
                self._dirty = True
        facts.path = str(path)
        return facts

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            atomic_write_text(self.path, json.dumps({"version": PROBE_VERSION, "videos": self.entries},
                                                    allow_nan=False) + "\n")
            self._dirty = False
        except OSError as err:  # a read-only cache dir costs a re-probe next time, nothing else
            logger.warning("video probe cache %s not written: %s", self.path, err)


def probe_videos(paths: Iterable[str], cache: Optional[ProbeCache] = None, workers: int = 4) -> dict[str, VideoFacts]:
    """Facts for each distinct path (threads: PyAV releases the GIL while reading)."""
    from concurrent.futures import ThreadPoolExecutor

    cache = cache if cache is not None else ProbeCache()
    unique = list(dict.fromkeys(str(p) for p in paths))
    if workers > 1 and len(unique) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            facts = dict(zip(unique, pool.map(cache.get, unique)))
    else:
        facts = {p: cache.get(p) for p in unique}
    cache.save()
    return facts


# --------------------------------------------------------------------------- facts -> problems
def duration_problem(stated: Optional[float], facts: VideoFacts, tolerance_s: float = DURATION_TOLERANCE_S,
                     tolerance_rel: float = DURATION_TOLERANCE_REL) -> Optional[str]:
    if stated is None or not facts.ok or facts.duration is None:
        return None
    allowed = max(tolerance_s, tolerance_rel * facts.duration)
    if abs(float(stated) - facts.duration) > allowed:
        return (f"stated duration {float(stated):g} s but the video lasts {facts.duration:g} s "
                f"({facts.frames} frames at {facts.fps:g} fps; tolerance {allowed:.2f} s)")
    return None


def video_problems(samples: Sequence[VTGSample], locations: Optional[Sequence[Location]] = None, *,
                   cache: Optional[ProbeCache] = None, tolerance_s: float = DURATION_TOLERANCE_S,
                   tolerance_rel: float = DURATION_TOLERANCE_REL, workers: int = 4) -> dict[int, list[Problem]]:
    """``{sample index: problems}`` for the samples whose video is unusable or whose stated duration is
    not the video's. Samples without ``video_path`` (feature-only datasets) are not probed."""
    if locations is None:
        locations = [Location("<memory>", i + 1) for i in range(len(samples))]
    facts = probe_videos([s.video_path for s in samples if s.video_path], cache=cache, workers=workers)
    out: dict[int, list[Problem]] = {}
    for i, (s, loc) in enumerate(zip(samples, locations)):
        if not s.video_path:
            continue
        f = facts[str(s.video_path)]
        if not f.ok:
            out.setdefault(i, []).append(Problem(f.kind, f"video {s.video_path}: {f.reason}", loc, s.qid))
            continue
        why = duration_problem(s.duration, f, tolerance_s, tolerance_rel)
        if why:
            out.setdefault(i, []).append(Problem(DURATION_MISMATCH, f"video {s.video_path}: {why}", loc, s.qid))
    return out


def is_probe_ok(video_path: str | os.PathLike, stated_duration: Optional[float] = None, *,
                cache: Optional[ProbeCache] = None, tolerance_s: float = DURATION_TOLERANCE_S,
                tolerance_rel: float = DURATION_TOLERANCE_REL) -> tuple[bool, Optional[str]]:
    """``(ok, reason)`` for one video: usable, and (when ``stated_duration`` is given) of that duration.
    Cached like everything here, so calling it per row at run time costs a stat after the first time."""
    cache = cache if cache is not None else _shared_cache()
    facts = cache.get(video_path)
    if not facts.ok:
        return False, f"{video_path}: {facts.reason}"
    why = duration_problem(stated_duration, facts, tolerance_s, tolerance_rel)
    return (False, f"{video_path}: {why}") if why else (True, None)


_SHARED: Optional[ProbeCache] = None


def _shared_cache() -> ProbeCache:
    global _SHARED
    if _SHARED is None:
        _SHARED = ProbeCache()
    return _SHARED


# --------------------------------------------------------------------------- pre-flight
class BadVideosError(ValueError):
    """Pre-flight under ``on_bad_video="error"``: the rows whose video is unusable; ``.problems`` lists them."""

    def __init__(self, what: str, problems: list[Problem], n_rows: int, max_listed: int = 20):
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems[:max_listed])
        more = f"\n  ... and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        counts: dict[str, int] = {}
        for p in problems:
            counts[p.kind] = counts.get(p.kind, 0) + 1
        super().__init__(
            f"{what}: {len(problems)} video problem(s) in {n_rows} row(s) "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}):\n{listed}{more}\n"
            f"(fix or remove these rows; --on_bad_video skip drops them, --probe_videos false skips this check)")


def preflight(samples: Sequence[VTGSample], locations: Optional[Sequence[Location]] = None, *,
              what: str = "data", on_bad_video: str = "error", probe: bool = True,
              cache: Optional[ProbeCache] = None, tolerance_s: float = DURATION_TOLERANCE_S,
              tolerance_rel: float = DURATION_TOLERANCE_REL) -> list[VTGSample]:
    """Probe every sample's video before a run starts. ``on_bad_video="error"`` raises
    :class:`BadVideosError` listing the bad rows (``file:line``, qid, why); ``"skip"`` returns the samples
    without them and logs the count. ``probe=False`` returns ``samples`` unchanged."""
    if on_bad_video not in ON_BAD_VIDEO:
        raise ValueError(f"on_bad_video must be one of {ON_BAD_VIDEO}, got {on_bad_video!r}")
    samples = list(samples)
    if not probe or not samples:
        return samples
    cache = cache if cache is not None else ProbeCache()
    bad = video_problems(samples, locations, cache=cache, tolerance_s=tolerance_s, tolerance_rel=tolerance_rel)
    logger.info("%s: probed %d video(s) (%d from the cache %s), %d bad row(s)", what,
                len({s.video_path for s in samples if s.video_path}), cache.hits, cache.path, len(bad))
    if not bad:
        return samples
    problems = [p for i in sorted(bad) for p in bad[i]]
    if on_bad_video == "error":
        raise BadVideosError(what, problems, len(bad))
    logger.warning("%s: skipping %d of %d row(s) whose video is unusable (%s)", what, len(bad), len(samples),
                   "; ".join(str(p) for p in problems[:3]) + (" ..." if len(problems) > 3 else ""))
    return [s for i, s in enumerate(samples) if i not in bad]


def locations_by_qid(path: str | os.PathLike, format: str, **parse_kwargs) -> Mapping[str, Location]:
    """``{qid: Location}`` of a dataset file (re-parsed; cheap next to probing), for pre-flight reports of
    samples whose loader did not keep their line. Empty when the file cannot be parsed again."""
    from vtg_rl.data.loaders import FORMATS

    try:
        parsed = FORMATS[format].parse(path, **parse_kwargs)
    except Exception:  # noqa: BLE001 - only a nicety for the report
        return {}
    out: dict[str, Location] = {}
    for s, loc in zip(parsed.samples, parsed.locations):
        out.setdefault(s.qid, loc)
    return out


def locate(samples: Sequence[VTGSample], by_qid: Mapping[str, Location], file: str) -> list[Location]:
    return [by_qid.get(s.qid, Location(str(file))) for s in samples]


def preflight_loaded(samples: Sequence[VTGSample], source: Optional[str], format: Optional[str], *,
                     what: str, probe: bool = True, on_bad_video: str = "error",
                     parse_kwargs: Optional[dict] = None) -> list[VTGSample]:
    """:func:`preflight` for samples read from the file ``source`` in ``format``: bad rows are reported
    with their ``file:line`` (found by re-reading the file), else with the file name and qid."""
    samples = list(samples)
    if not probe or not samples:
        return samples
    locations = None
    if source is not None:
        by_qid = locations_by_qid(source, format, **(parse_kwargs or {})) if format else {}
        locations = locate(samples, by_qid, source)
    return preflight(samples, locations, what=what, on_bad_video=on_bad_video, probe=probe)


def preflight_split(samples: Sequence[VTGSample], data, split: str) -> list[VTGSample]:
    """The pre-flight of the LLM recipes (``load_split``): ``data`` is their ``DataArguments``
    (``probe_videos``, ``on_bad_video``, where the split came from)."""
    if not getattr(data, "probe_videos", True):
        return list(samples)
    if data.dataset == "synthetic":
        name = "train" if split == "train" else data.eval_split
        source, fmt, kw = str(Path(data.synthetic_dir) / f"{name}.jsonl"), "unified", {}
    else:
        from vtg_rl.data.loaders import GROUNDING_FORMATS

        source = data.dataset_path if split == "train" else data.eval_path
        fmt, kw = GROUNDING_FORMATS.get(data.dataset), {"durations": data.durations, "gsub": data.gsub}
    return preflight_loaded(samples, source, fmt, what=f"{split} split ({source})",
                            on_bad_video=getattr(data, "on_bad_video", "error"), parse_kwargs=kw)


def add_video_problems(report, samples: Sequence[VTGSample], locations: Sequence[Location], policy: str,
                       cache: Optional[ProbeCache] = None) -> list[VTGSample]:
    """Probe the valid ``samples`` of a :class:`~vtg_rl.data.validate.ValidationReport` made under policy
    ``drop`` and fold the video problems into it as if ``policy`` had been applied to them too
    (``vtg-rl data check --probe-videos``). Returns the samples whose video is usable."""
    bad = video_problems(samples, locations, cache=cache if cache is not None else ProbeCache())
    kept = [s for i, s in enumerate(samples) if i not in bad]
    report.problems.extend(p for i in sorted(bad) for p in bad[i])
    report.problems.sort(key=lambda p: (p.location.file, p.location.line or 0))
    report.policy = policy
    report.n_bad_rows += len(bad)
    report.n_dropped = report.n_bad_rows if policy == "drop" else 0
    report.n_samples = len(kept)
    report.n_videos = len({s.vid for s in kept})
    report.n_labeled = sum(1 for s in kept if s.windows)
    report.n_unlabeled = len(kept) - report.n_labeled
    return kept
