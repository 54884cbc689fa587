"""vLLM video rollouts vs HF generate, on a randomly initialised model of Qwen2.5-VL-3B's shape (GPU only).

    python benchmarks/vllm_video.py                 # the measurement (needs CUDA and `pip install -e '.[vllm]'`)
    python benchmarks/vllm_video.py --smoke         # tiny model, a few prompts (still needs vLLM + CUDA)
    python benchmarks/vllm_video.py --smoke --no-vllm   # the HF half only, runs on CPU (checks the script)

What it measures, on the same prompts (synthetic-world videos, the GRPO prompt, G samples each):

* ``hf_tokens_per_s`` / ``vllm_tokens_per_s``: generated tokens per second of ``model.generate`` (bf16, sdpa,
  ``num_return_sequences=G``) and of ``vllm.LLM.generate`` fed through :class:`vtg_rl.mllm.vllm_video.VideoLLMProxy`
  (the colocate path of ``VideoGRPOTrainer``); every completion is forced to ``--max-new-tokens`` tokens
  (``min_new_tokens`` / ``min_tokens``) so both count the same work;
* ``logp_diff_mean`` / ``logp_diff_max``: |log p| of vLLM's own samples by vLLM vs by the HF model with the
  video as the trainer processes it — the quantity ``vllm_max_logp_difference`` guards in training;
  ``logp_diff_mean_wrong_timestamps``: the same against an HF forward whose video lost its metadata (the
  processor's 24-fps fallback): a check that the comparison can see a timestamp mismatch at all.

The model: Qwen2.5-VL-3B's text (hidden 2048, 36 layers, 16 heads / 2 KV heads, FFN 11008, tied embeddings) and
vision tower (hidden 1280, depth 32, 16 heads, FFN 3420) with random weights, and the project's locally trained
tokenizer, so the vocabulary (and the embedding matrix) is ~500 tokens instead of 151,936: about 3.1 B
parameters instead of 3.75 B. Frames are upscaled to a 224x224 budget (64 video tokens per temporal patch).

Writes ``benchmarks/results/vllm_video.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vtg_rl.agents.common import write_json_atomic  # noqa: E402
from vtg_rl.data.schema import read_jsonl  # noqa: E402
from vtg_rl.data.synthetic import generate_world  # noqa: E402
from vtg_rl.mllm.grpo_video import mm_token_type_ids  # noqa: E402
from vtg_rl.prompts import grounding_messages  # noqa: E402
from vtg_rl.mllm.video_inputs import build_video_inputs, render_prompt  # noqa: E402
from vtg_rl.mllm.video_source import VideoSampling  # noqa: E402
from vtg_rl.mllm.vllm_video import VideoLLMProxy, VideoPayload  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PIXELS = 224 * 224
QWEN25_VL_3B = dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                    intermediate_size=11008, max_position_embeddings=32768, vision_hidden_size=1280,
                    vision_depth=32, vision_num_heads=16, vision_intermediate_size=3420,
                    min_pixels=PIXELS, max_pixels=PIXELS)
SMOKE = dict(min_pixels=PIXELS, max_pixels=PIXELS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="the tiny model and 4 prompts")
    p.add_argument("--no-vllm", action="store_true", help="HF half only (CPU works): checks the script")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--hf-batch", type=int, default=4, help="prompts per HF generate call")
    p.add_argument("--logp-prompts", type=int, default=8, help="prompts whose vLLM samples are re-scored by HF")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.45)
    p.add_argument("--work-dir", default="runs/bench/vllm_video")
    return p.parse_args(argv)


def build_model(out: Path, smoke: bool, device: str) -> Path:
    """A randomly initialised Qwen2.5-VL (3B shape, or the tiny one) saved with ``save_pretrained``."""
    if (out / "config.json").is_file():
        return out
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vtg_rl.models.tiny_qwen import build_config, build_processor, make_spec

    spec = make_spec(**(SMOKE if smoke else QWEN25_VL_3B))
    processor = build_processor(spec)
    config, _ = build_config(spec, processor.tokenizer)
    if not smoke:
        config.vision_config.fullatt_block_indexes = [7, 15, 23, 31]  # the 3B's full-attention vision blocks
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def make_prompts(processor, world: Path, n: int):
    """(prompt ids, SampledVideo) for ``n`` test samples, exactly as VideoGRPOTrainer builds them."""
    sampling = VideoSampling(fps=2.0, max_frames=32)
    samples = read_jsonl(world / "test.jsonl")[:n]
    out = []
    for s in samples:
        video = sampling.load(s.video_path)
        text = render_prompt(processor, grounding_messages(s))
        batch = build_video_inputs(processor, [text], [video])
        out.append((batch["input_ids"][0].tolist(), video))
    return out


def hf_video_kwargs(processor, video, device, drop_metadata=False):
    from vtg_rl.mllm.video_inputs import VIDEO_BLOCK

    kwargs = {} if drop_metadata else {"video_metadata": [video.metadata]}
    b = processor(text=[VIDEO_BLOCK], videos=[video.frames], do_sample_frames=False, return_tensors="pt", **kwargs)
    return {"pixel_values_videos": b["pixel_values_videos"].to(device, torch.bfloat16),
            "video_grid_thw": b["video_grid_thw"].to(device),
            "second_per_grid_ts": torch.as_tensor(b["second_per_grid_ts"]).reshape(-1).to(device)}


def hf_generate(model, processor, prompts, args, device) -> tuple[int, float]:
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(prompts), args.hf_batch):
        chunk = prompts[i:i + args.hf_batch]
        videos = [v for _, v in chunk]
        ids = [p for p, _ in chunk]
        width = max(len(x) for x in ids)
        pad = processor.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        vk = [hf_video_kwargs(processor, v, device) for v in videos]
        out = model.generate(input_ids=input_ids, attention_mask=attention,
                             mm_token_type_ids=mm_token_type_ids(processor, input_ids),
                             pixel_values_videos=torch.cat([k["pixel_values_videos"] for k in vk]),
                             video_grid_thw=torch.cat([k["video_grid_thw"] for k in vk]),
                             second_per_grid_ts=torch.cat([k["second_per_grid_ts"] for k in vk]),
                             do_sample=True, temperature=1.0, num_return_sequences=args.num_generations,
                             max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
        tokens += int((out[:, width:] != pad).sum())
    if device == "cuda":
        torch.cuda.synchronize()
    return tokens, time.perf_counter() - start


@torch.no_grad()
def hf_logps(model, processor, prompt_ids, completion, video, device, drop_metadata=False) -> torch.Tensor:
    ids = torch.tensor([list(prompt_ids) + list(completion)], device=device)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm_token_type_ids(processor, ids),
                   **hf_video_kwargs(processor, video, device, drop_metadata)).logits
    logps = torch.log_softmax(logits[0, len(prompt_ids) - 1:-1].float(), dim=-1)
    return logps.gather(-1, torch.tensor(completion, device=device)[:, None])[:, 0].cpu()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.prompts, args.num_generations, args.max_new_tokens, args.logp_prompts = 4, 2, 16, 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not args.no_vllm:
        import importlib.util

        if device != "cuda" or importlib.util.find_spec("vllm") is None:
            print("benchmarks/vllm_video.py needs a CUDA GPU and vLLM (pip install -e '.[vllm]'); "
                  "--no-vllm runs the HF half only", file=sys.stderr)
            return 2
    work = Path(args.work_dir)
    world = work / "world"
    if not (world / "test.jsonl").is_file():
        generate_world(world, n=max(64, 4 * args.prompts), seed=0)
    model_dir = build_model(work / ("tiny_model" if args.smoke else "qwen2_5_vl_3b_shape_random"), args.smoke, device)

    from vtg_rl.models.tiny_qwen import count_parameters, load_qwen_vl

    model, processor = load_qwen_vl(model_dir, dtype=torch.bfloat16 if device == "cuda" else torch.float32,
                                    device_map=device if device == "cuda" else None)
    model.eval()
    prompts = make_prompts(processor, world, args.prompts)
    hf_generate(model, processor, prompts[:1], args, device)  # warm-up
    hf_tokens, hf_s = hf_generate(model, processor, prompts, args, device)
    result = {"model_dir": str(model_dir), "parameters": count_parameters(model), "device": device,
              "prompts": len(prompts), "num_generations": args.num_generations,
              "max_new_tokens": args.max_new_tokens, "video_tokens_per_prompt":
              int(sum(x == processor.video_token_id for x in prompts[0][0])),
              "hf_tokens": hf_tokens, "hf_s": hf_s, "hf_tokens_per_s": hf_tokens / hf_s, "smoke": args.smoke}

    # the comparison below can see a timestamp mismatch only if the model's output depends on the timestamps
    ids, video = prompts[0]
    probe = torch.randint(0, len(processor.tokenizer) - 32, (args.max_new_tokens,)).tolist()
    result["hf_logp_shift_wrong_timestamps"] = float(
        (hf_logps(model, processor, ids, probe, video, device)
         - hf_logps(model, processor, ids, probe, video, device, drop_metadata=True)).abs().mean())

    if not args.no_vllm:
        from vllm import LLM, SamplingParams

        llm = VideoLLMProxy(LLM(model=str(model_dir), dtype="bfloat16", max_model_len=8192,
                                gpu_memory_utilization=args.gpu_memory_utilization, limit_mm_per_prompt={"video": 1},
                                seed=0, trust_remote_code=False), processor.video_token_id)
        rows = [{"prompt_token_ids": ids, "multi_modal_data": {"image": VideoPayload.from_video(v)}}
                for ids, v in prompts]
        params = SamplingParams(n=args.num_generations, temperature=1.0, max_tokens=args.max_new_tokens,
                                min_tokens=args.max_new_tokens, logprobs=0)
        llm.generate(rows[:1], params, use_tqdm=False)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        outputs = llm.generate(rows, params, use_tqdm=False)
        torch.cuda.synchronize()
        vllm_s = time.perf_counter() - start
        vllm_tokens = sum(len(o.token_ids) for out in outputs for o in out.outputs)
        diffs, wrong = [], []
        for (ids, video), out in list(zip(prompts, outputs))[:args.logp_prompts]:
            for o in out.outputs:
                served = torch.tensor([lp[t].logprob for t, lp in zip(o.token_ids, o.logprobs)])
                diffs.append((served - hf_logps(model, processor, ids, o.token_ids, video, device)).abs())
                wrong.append((served - hf_logps(model, processor, ids, o.token_ids, video, device, True)).abs())
        d, w = torch.cat(diffs), torch.cat(wrong)
        result.update(vllm_tokens=vllm_tokens, vllm_s=vllm_s, vllm_tokens_per_s=vllm_tokens / vllm_s,
                      speedup=(vllm_tokens / vllm_s) / (hf_tokens / hf_s), logp_diff_mean=float(d.mean()),
                      logp_diff_max=float(d.max()), logp_diff_mean_wrong_timestamps=float(w.mean()))

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "vllm_video_smoke.json" if args.smoke else "vllm_video.json"
    write_json_atomic(RESULTS / name, result)
    print(f"{'engine':<8}{'tokens':>10}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'HF':<8}{hf_tokens:>10}{hf_s:>10.1f}{hf_tokens / hf_s:>12.1f}")
    if "vllm_tokens" in result:
        print(f"{'vLLM':<8}{result['vllm_tokens']:>10}{result['vllm_s']:>10.1f}{result['vllm_tokens_per_s']:>12.1f}")
        print(f"speed-up {result['speedup']:.1f}x; |logp vLLM - HF| mean {result['logp_diff_mean']:.4f} "
              f"max {result['logp_diff_max']:.4f}; with lost timestamps {result['logp_diff_mean_wrong_timestamps']:.4f}")
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
