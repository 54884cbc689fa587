"""``vtg-rl data check FILE --format F``: validate a dataset file and print what it holds.

Prints the number of samples, videos, labeled / unlabeled samples and every problem kind with its
count, then the problems themselves with ``file:line``. Exit status: 1 when problems were found under
``--policy strict`` (the default), 0 otherwise (``--policy drop`` reports and drops), 2 when the input
itself is unusable (missing file, malformed durations / gsub file).
"""

from __future__ import annotations

import argparse
import sys

from vtg_rl.data.loaders import DEFAULT_VIDEO_EXTENSIONS, FORMATS, load_samples
from vtg_rl.data.validate import DEFAULT_TOLERANCE, MAX_LISTED, POLICIES, DataValidationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the dataset file (txt / csv / json / jsonl, depending on --format)")
    parser.add_argument("--format", required=True, choices=list(FORMATS),
                        help="; ".join(f"{s.name}: {s.expects}" for s in FORMATS.values()))
    parser.add_argument("--durations", action="append", default=None, metavar="FILE",
                        help="video durations (Charades_v1_*.csv, 'vid seconds' txt, or json); repeatable")
    parser.add_argument("--gsub", default=None, metavar="FILE", help="NExT-GQA grounding json (gsub_*.json)")
    parser.add_argument("--video-dir", default=None, metavar="DIR",
                        help="folder of the videos: each vid must exist as DIR/<vid>.<ext>")
    parser.add_argument("--video-ext", action="append", default=None, metavar="EXT",
                        help=f"video extensions to try (default {' '.join(DEFAULT_VIDEO_EXTENSIONS)}); repeatable")
    parser.add_argument("--video-map", default=None, metavar="FILE",
                        help="json {vid: path relative to --video-dir} (e.g. NExT-GQA map_vid_vidorID.json)")
    parser.add_argument("--policy", choices=POLICIES, default="strict",
                        help="strict: any problem is an error (exit 1); drop: drop bad samples and count them")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="seconds a window end may exceed the duration (default %(default)s)")
    parser.add_argument("--clip-length", type=float, default=None, metavar="SECONDS",
                        help="seconds per labelled clip for tvsum / youtube_highlight (default: 2 / 1)")
    parser.add_argument("--allow-outside-videos", action="store_true",
                        help="accept a relative video_path that leads outside the dataset file's folder (../x.mp4)")
    parser.add_argument("--probe-videos", action="store_true",
                        help="also open every video (PyAV, cached): report 0-byte, truncated, non-video, audio-only "
                             "and 1-frame files and stated durations that differ from the real ones")
    parser.add_argument("--show", type=int, default=MAX_LISTED, metavar="N",
                        help="list at most N problems (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    exts = None
    if args.video_ext:
        exts = tuple(e if e.startswith(".") else "." + e for e in args.video_ext)
    probe = getattr(args, "probe_videos", False)
    try:
        samples, report = load_samples(
            args.file, args.format, durations=args.durations, gsub=args.gsub, video_dir=args.video_dir,
            policy="drop" if probe else args.policy, tolerance=args.tolerance, video_map=args.video_map,
            clip_length=getattr(args, "clip_length", None),
            allow_outside_root=getattr(args, "allow_outside_videos", False),
            **({"video_extensions": exts} if exts else {}),
        )
        status = 0
        if probe:  # the rows that passed validation; their problems join the report under --policy
            from vtg_rl.data.probe import add_video_problems, locate, locations_by_qid

            by_qid = locations_by_qid(args.file, args.format, durations=args.durations, gsub=args.gsub)
            add_video_problems(report, samples, locate(samples, by_qid, args.file), args.policy)
            status = int(args.policy == "strict" and bool(report.problems))
    except DataValidationError as err:
        report, status = err.report, 1
    except (FileNotFoundError, ValueError) as err:
        print(f"vtg-rl data check: error: {err}", file=sys.stderr)
        return 2
    print(report.summary(max_listed=args.show))
    if status:
        print(f"policy strict: {len(report.problems)} problem(s); rerun with --policy drop to drop "
              f"the bad samples", file=sys.stderr)
    return status
