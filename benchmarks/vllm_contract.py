"""What vLLM's own Qwen2.5-VL code makes of the trainer's vLLM inputs, on CPU (no engine, no GPU).

    python benchmarks/vllm_contract.py            # needs vLLM importable (see the README: vLLM rollouts for video)

For synthetic-world prompts at three samplings (2 fps, 4 fps, and 1.3 fps with half the frames blanked as the
curriculum does), the rows ``VideoGRPOTrainer`` hands vLLM in colocate mode (:class:`VideoLLMProxy`) go
through vLLM's real multimodal processor and its mRoPE position code, and are compared with the trainer:

* ``processor_equal``: prompt ids after vLLM expands the placeholder, ``pixel_values_videos`` (vLLM set to
  normalise on the host, as HF does), ``video_grid_thw`` and ``second_per_grid_ts`` all equal;
* ``positions_equal_original`` / ``positions_equal_model``: vLLM's 3-D positions equal those reaching the
  trainer model's rotary embedding in a real forward, with ``mrope_text_positions='original'`` (what the
  trainer uses with vLLM) / with transformers' own rule.

Writes ``benchmarks/results/vllm_contract.json`` (counts per check, and one row per prompt).
"""

from __future__ import annotations

import argparse
import functools
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vtg_rl.agents.common import write_json_atomic  # noqa: E402
from vtg_rl.data.schema import read_jsonl  # noqa: E402
from vtg_rl.data.synthetic import generate_world  # noqa: E402
from vtg_rl.mllm.mrope import rotary_positions, use_original_text_positions  # noqa: E402
from vtg_rl.prompts import grounding_messages  # noqa: E402
from vtg_rl.mllm.video_inputs import build_video_inputs, render_prompt  # noqa: E402
from vtg_rl.mllm.video_source import VideoSampling  # noqa: E402
from vtg_rl.mllm.vllm_video import VideoLLMProxy, VideoPayload  # noqa: E402
from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl, load_qwen_vl  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SAMPLINGS = ((2.0, False), (4.0, False), (1.3, True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=4, help="prompts per sampling")
    p.add_argument("--work-dir", default="runs/bench/vllm_contract")
    args = p.parse_args(argv)
    try:
        from vllm.config import ModelConfig
        from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration as VllmQwen
        from vllm.multimodal import MULTIMODAL_REGISTRY
        from vllm.multimodal.inputs import MultiModalFeatureSpec, PlaceholderRange
    except ImportError as err:
        print(f"benchmarks/vllm_contract.py needs vLLM importable ({err})", file=sys.stderr)
        return 2
    import vllm

    work = Path(args.work_dir)
    model_dir = build_tiny_qwen2_5_vl(work / "tiny_qwen", seed=0)
    if not (work / "world" / "train.jsonl").is_file():
        generate_world(work / "world", n=max(16, 2 * args.prompts), seed=0)
    samples = read_jsonl(work / "world" / "train.jsonl")[:args.prompts]
    model, processor = load_qwen_vl(model_dir)
    original, _ = load_qwen_vl(model_dir)
    use_original_text_positions(original)
    config = ModelConfig(model=str(model_dir), tokenizer=str(model_dir), dtype="float32",
                         limit_mm_per_prompt={"video": 1}, mm_device_do_normalize=False,
                         trust_remote_code=False)
    vllm_processor = MULTIMODAL_REGISTRY.create_processor(config)
    fake = types.SimpleNamespace(config=config.hf_config)  # what vLLM's position code reads from the model
    fake.iter_mm_grid_thw = functools.partial(VllmQwen.iter_mm_grid_thw, fake)
    proxy = VideoLLMProxy(None, processor.video_token_id)

    rows = []
    for fps, masked in SAMPLINGS:
        for s in samples:
            video = VideoSampling(fps=fps).load(s.video_path)
            if masked:
                video.frames[: len(video.frames) // 2] = 100
            batch = build_video_inputs(processor, [render_prompt(processor, grounding_messages(s))], [video])
            ids = batch["input_ids"][0].tolist()
            (row,), _ = proxy.video_rows([{"prompt_token_ids": ids,
                                           "multi_modal_data": {"image": VideoPayload.from_video(video)}}])
            items = vllm_processor.info.parse_mm_data(row["multi_modal_data"])
            out = vllm_processor(row["prompt_token_ids"], items, hf_processor_mm_kwargs=row["mm_processor_kwargs"])
            item = out["mm_kwargs"]["video"][0]
            field = {k: (v.data if hasattr(v, "data") else v) for k, v in item.items()}
            spg_vllm = float(field["second_per_grid_ts"])
            processor_equal = (out["prompt_token_ids"] == ids
                               and torch.equal(field["pixel_values_videos"], batch["pixel_values_videos"])
                               and torch.equal(field["video_grid_thw"].reshape(-1), batch["video_grid_thw"].reshape(-1))
                               and abs(spg_vllm - float(batch["second_per_grid_ts"][0])) < 1e-6)
            ph = out["mm_placeholders"]["video"][0]
            feature = MultiModalFeatureSpec(data=item, modality="video", identifier="v",
                                            mm_position=PlaceholderRange(offset=ph.offset, length=ph.length))
            vpos, _ = VllmQwen.get_mrope_input_positions(fake, out["prompt_token_ids"], [feature])
            vpos = np.asarray(vpos)
            eq = {}
            for name, m in (("original", original), ("model", model)):
                ours = rotary_positions(m, batch)[:, 0].numpy()
                eq[name] = ours.shape == vpos.shape and bool(np.array_equal(ours, vpos))
                eq[name + "_differing_tokens"] = int((ours != vpos).any(0).sum()) if ours.shape == vpos.shape else -1
            rows.append({"qid": s.qid, "fps": fps, "masked": masked, "video_tokens": ids.count(processor.video_token_id),
                         "second_per_grid_ts": spg_vllm, "processor_equal": bool(processor_equal),
                         "positions_equal_original": eq["original"], "positions_equal_model": eq["model"],
                         "differing_tokens_original": eq["original_differing_tokens"],
                         "differing_tokens_model": eq["model_differing_tokens"]})
            print(rows[-1], flush=True)
    result = {"vllm_version": vllm.__version__, "prompts": len(rows),
              "processor_equal": sum(r["processor_equal"] for r in rows),
              "positions_equal_original": sum(r["positions_equal_original"] for r in rows),
              "positions_equal_model": sum(r["positions_equal_model"] for r in rows), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "vllm_contract.json", result)
    print(f"vLLM {result['vllm_version']}: processor equal {result['processor_equal']}/{len(rows)}; positions equal "
          f"{result['positions_equal_original']}/{len(rows)} with the original rule, "
          f"{result['positions_equal_model']}/{len(rows)} with transformers' rule")
    return 0


if __name__ == "__main__":
    sys.exit(main())
