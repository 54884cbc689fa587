"""`vtg-rl features`: extract frozen-CLIP clip and query features into the Moment-DETR layout.

    vtg-rl features --data runs/data/synthetic/train.jsonl --clip runs/models/tiny_clip --out runs/features/synthetic
"""

from __future__ import annotations

import argparse
import json
import sys

from vtg_rl.data.schema import read_jsonl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", required=True, help="unified-schema jsonl file(s) with video_path")
    parser.add_argument("--clip", required=True, help="CLIPModel checkpoint folder (e.g. runs/models/tiny_clip)")
    parser.add_argument("--out", required=True, help="feature root: writes clip_features/ and clip_text_features/")
    parser.add_argument("--clip-len", type=float, default=2.0, help="seconds per feature clip (QVHighlights: 2)")
    parser.add_argument("--frames-per-clip", type=int, default=2, help="frames averaged per clip")
    parser.add_argument("--patch-grid", type=int, default=0,
                        help="also write clip_patch_features: the last layer's patch map pooled to GxG, flattened")
    parser.add_argument("--frame-cache", default=None, help="optional folder caching decoded frames")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true", help="recompute files that already exist")
    parser.add_argument("--no-probe-videos", dest="probe_videos", action="store_false",
                        help="do not open every video before extraction (by default unusable videos and "
                             "stated-vs-real duration mismatches are found first; cached)")
    parser.add_argument("--on-bad-video", choices=("error", "skip"), default="error",
                        help="rows whose video failed the probe: error (refuse, listing them) or skip them")
    parser.add_argument("--trust_remote_code", "--trust-remote-code", action="store_true",
                        help="let a CLIP folder whose config has an auto_map run its own Python code (off: refused)")


def run(args: argparse.Namespace) -> int:
    from vtg_rl.heads.features import ClipFeatureExtractor

    from vtg_rl.data.video import VideoDecodeError
    from vtg_rl.heads.features import check_feature_ids

    try:
        samples = [s for path in args.data for s in read_jsonl(path)]
        check_feature_ids(samples)  # before the (slow) CLIP load
        extractor = ClipFeatureExtractor(args.clip, clip_len=args.clip_len, frames_per_clip=args.frames_per_clip,
                                         frame_cache_dir=args.frame_cache, device=args.device,
                                         patch_grid=args.patch_grid, trust_remote_code=args.trust_remote_code)
        counts = extractor.extract(samples, args.out, overwrite=args.overwrite, probe_videos=args.probe_videos,
                                   on_bad_video=args.on_bad_video)
    except (FileNotFoundError, ValueError, VideoDecodeError) as err:
        print(f"vtg-rl features: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, **counts, **extractor.manifest()}, indent=2, allow_nan=False))
    return 0
