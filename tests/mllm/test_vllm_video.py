"""vLLM rollouts for video (vtg_rl.mllm.vllm_video), checked on CPU against vLLM's contract.

vLLM itself needs a GPU. What can be checked here is everything on our side of the boundary, with a fake
engine that does what vLLM 0.33's Qwen2.5-VL path does with what it is given: it hands the video metadata
dict to the HF processor as ``VideoMetadata`` (colocate), or decodes a ``video/jpeg`` data URL with PIL and
builds that metadata from ``media_io_kwargs`` (server), then scores its samples with the model. The trainer's
own rollout log-probs must then equal the engine's: any frame, resolution or timestamp difference between
what vLLM is sent and what the trainer trains on shows up as a log-prob difference.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from transformers.video_utils import VideoMetadata

from vtg_rl.data.schema import read_jsonl
from vtg_rl.mllm.dataset import samples_to_hf
from vtg_rl.mllm.grpo import VideoGRPOConfig, VideoGRPOTrainer
from vtg_rl.mllm.grpo_video import mm_token_type_ids
from vtg_rl.mllm.inference import VISION_TOKENS
from vtg_rl.mllm.video_inputs import VIDEO_BLOCK, build_video_inputs
from vtg_rl.mllm.video_source import VideoSampling
from vtg_rl.mllm.vllm_video import (VideoLLMProxy, VideoPayload, decode_jpeg_frame,
                                    enable_video_rollouts, jpeg_data_url, jpeg_roundtrip, place_video_features,
                                    token_runs)
from vtg_rl.models.tiny_qwen import load_qwen_vl

torch.set_num_threads(1)


def varied_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 7) / 7 for c in completions]


@pytest.fixture(scope="module")
def rows(synthetic_world):
    samples = read_jsonl(synthetic_world["train"])
    hard = [s for s in samples if s.meta.get("hard")]
    easy = [s for s in samples if not s.meta.get("hard")]
    return samples_to_hf(hard[:2] + easy[:2])


@pytest.fixture(scope="module")
def video(rows):
    return VideoSampling().load(rows[0]["video_path"])


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir):
    return load_qwen_vl(tiny_qwen_dir)[1]


# ------------------------------------------------------------------ what vLLM does with what it is sent
def processor_as_vllm_calls_it(processor, frames, metadata: dict | None):
    """vLLM's Qwen2.5-VL ``_get_hf_mm_inputs``: the metadata dict (minus ``do_sample_frames``) becomes
    ``VideoMetadata`` for the HF processor; ``None`` = an engine that dropped it."""
    kwargs = {}
    if metadata is not None:
        kwargs["video_metadata"] = [VideoMetadata(**{k: v for k, v in metadata.items() if k != "do_sample_frames"})]
    out = processor(text=[VIDEO_BLOCK], videos=[frames], do_sample_frames=False, return_tensors="pt", **kwargs)
    return out["pixel_values_videos"], out["video_grid_thw"], torch.as_tensor(out["second_per_grid_ts"]).reshape(-1)


def server_decodes(url: str, media_io_kwargs: dict):
    """vLLM's ``VideoMediaIO.load_base64('video/jpeg', ...)``: PIL-decoded frames and the metadata it builds."""
    prefix = "data:video/jpeg;base64,"
    assert url.startswith(prefix)
    parts = url[len(prefix):].split(",")
    if media_io_kwargs.get("num_frames", 32) > 0:  # vLLM keeps only num_frames frames (default 32)
        parts = parts[:media_io_kwargs.get("num_frames", 32)]
    frames = np.stack([decode_jpeg_frame(p) for p in parts])
    meta = {"total_num_frames": media_io_kwargs.get("total_num_frames", len(frames)),
            "fps": float(media_io_kwargs.get("fps", 1)), "frames_indices": media_io_kwargs.get("frames_indices"),
            "duration": media_io_kwargs.get("duration"), "video_backend": "jpeg_sequence",
            "do_sample_frames": media_io_kwargs.get("do_sample_frames", False)}
    return frames, meta


def test_the_metadata_vllm_hands_the_processor_gives_the_trainers_pixels_and_timestamps(processor, video):
    ours = build_video_inputs(processor, [VIDEO_BLOCK], [video])
    payload = VideoPayload.from_video(video)
    pixels, grid, spg = processor_as_vllm_calls_it(processor, *payload.vllm_item())
    assert torch.equal(pixels, ours["pixel_values_videos"])
    assert torch.equal(grid, ours["video_grid_thw"])
    assert torch.allclose(spg, torch.as_tensor(ours["second_per_grid_ts"]).reshape(-1))
    # the check has teeth: without the metadata the temporal step is the processor's 24 fps fallback
    _, _, blind = processor_as_vllm_calls_it(processor, payload.frames, None)
    assert not torch.allclose(blind, spg)


def test_server_media_io_kwargs_rebuild_the_metadata_and_jpeg_roundtrip_is_what_the_server_decodes(processor, rows):
    video = VideoSampling(fps=4.0).load(rows[0]["video_path"])
    assert len(video.frames) > 32, "the test needs more frames than vLLM's default num_frames"
    payload = VideoPayload.from_video(video)
    frames, meta = server_decodes(jpeg_data_url(payload.frames, 90), payload.media_io_kwargs())
    assert len(frames) == len(video.frames)  # num_frames=-1: the server keeps every frame sent
    same = jpeg_roundtrip(video, 90)
    assert np.array_equal(frames, same.frames)
    assert not np.array_equal(same.frames, video.frames)  # lossy, hence the round trip on the trainer side
    assert np.abs(same.frames.astype(int) - video.frames.astype(int)).mean() < 4
    _, _, spg = processor_as_vllm_calls_it(processor, frames, meta)
    want = processor.video_processor.temporal_patch_size / video.sampled_fps
    assert torch.allclose(spg, torch.full_like(spg, want))


def test_place_video_features_points_at_the_prompt_and_refuses_mismatches():
    ids = [1, 2, 9, 9, 9, 3, 4]
    assert token_runs(ids, 9) == [{"offset": 2, "length": 3}]
    features = {"mm_hashes": {"video": ["h"]}, "mm_placeholders": {"video": [{"offset": 1, "length": 3}]}}
    placed = place_video_features(features, ids, 9)
    assert placed["mm_placeholders"]["video"] == [{"offset": 2, "length": 3}]
    assert placed["mm_hashes"] == features["mm_hashes"]
    with pytest.raises(ValueError, match="server made 4"):
        place_video_features({"mm_placeholders": {"video": [{"offset": 0, "length": 4}]}}, ids, 9)
    with pytest.raises(ValueError, match="2 video"):
        place_video_features({"mm_placeholders": {"video": [{"offset": 0, "length": 3}] * 2}}, ids, 9)
    seen = []
    image = {"mm_placeholders": {"image": []}}
    place_video_features(image, ids, 9, fallback=lambda f, p: seen.append(f) or f)
    assert seen == [image]


def test_colocate_proxy_turns_trl_image_rows_into_vllm_videos_with_one_placeholder(video):
    payload = VideoPayload.from_video(video)
    proxy = VideoLLMProxy(None, video_token_id=9)
    rows, expected = proxy.video_rows([{"prompt_token_ids": [1, 9, 9, 9, 2], "multi_modal_data": {"image": payload}},
                                       {"prompt_token_ids": [3]}])
    frames, meta = rows[0]["multi_modal_data"]["video"]
    assert frames is payload.frames and meta["frames_indices"] == list(video.metadata.frames_indices)
    assert rows[0]["mm_processor_kwargs"] == {"do_sample_frames": False}
    assert rows[0]["prompt_token_ids"] == [1, 9, 2]  # vLLM expands the placeholder itself
    assert expected == [[1, 9, 9, 9, 2], None]
    assert rows[1] == {"prompt_token_ids": [3]}
    with pytest.raises(ValueError, match="one video"):
        proxy.video_rows([{"prompt_token_ids": [1], "multi_modal_data": {"image": [payload, payload]}}])


# ------------------------------------------------------------------ a whole rollout through a fake engine
class HFEngine:
    """Scores its own samples with the model, from the video as vLLM would have processed it."""

    def __init__(self, model, processor, temperature, length, drop_metadata=False):
        self.model, self.processor, self.temperature, self.length = model, processor, temperature, length
        self.drop_metadata = drop_metadata
        self.seen = []  # (prompt ids, frames, metadata) per request
        tok = processor.tokenizer
        special = {tok.convert_tokens_to_ids(t) for t in VISION_TOKENS} | set(tok.all_special_ids)
        self.vocab = [i for i in range(len(tok)) if i not in special]
        self.rng = np.random.default_rng(0)

    def sample(self, prompt_ids, frames, metadata):
        self.seen.append((list(prompt_ids), frames, metadata))
        pixels, grid, spg = processor_as_vllm_calls_it(self.processor, frames,
                                                       None if self.drop_metadata else metadata)
        completion = self.rng.choice(self.vocab, size=self.length).tolist()
        ids = torch.tensor([list(prompt_ids) + completion])
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=pixels,
                                video_grid_thw=grid, second_per_grid_ts=spg,
                                mm_token_type_ids=mm_token_type_ids(self.processor, ids)).logits
        logps = torch.log_softmax(logits[0, len(prompt_ids) - 1:-1].float() / self.temperature, dim=-1)
        return completion, logps.gather(-1, torch.tensor(completion)[:, None])[:, 0].tolist()


def request_output(prompt_ids, completion, logps):
    lp = [{t: types.SimpleNamespace(logprob=v, rank=1)} for t, v in zip(completion, logps)]
    return types.SimpleNamespace(prompt_token_ids=prompt_ids,
                                 outputs=[types.SimpleNamespace(token_ids=completion, logprobs=lp)])


class FakeLLM:
    """``vllm.LLM.generate``: expands each video placeholder token to the processed video's token count
    (as vLLM 0.32 does for every placeholder it finds), then samples."""

    def __init__(self, engine, extra_tokens=0):
        self.engine, self.sampling_params, self.extra_tokens = engine, [], extra_tokens

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        self.sampling_params.append(sampling_params)
        out = []
        for row in prompts:
            assert row["mm_processor_kwargs"]["do_sample_frames"] is False
            frames, meta = row["multi_modal_data"]["video"]
            _, grid, _ = processor_as_vllm_calls_it(self.engine.processor, frames, meta)
            pad = self.engine.processor.video_token_id
            ids = []
            for t in row["prompt_token_ids"]:
                ids += [pad] * (int(grid.prod()) // 4 + self.extra_tokens) if t == pad else [t]
            if self.extra_tokens:  # a mis-sized video cannot even be scored: what is checked is the proxy's refusal
                out.append(request_output(ids, [self.engine.vocab[0]], [0.0]))
            else:
                out.append(request_output(ids, *self.engine.sample(ids, frames, meta)))
        return out


class FakeServer:
    """TRL's VLLMClient against a server: render (video -> features) and generate (ids + features)."""

    base_url, model = "http://fake:8000", "tiny"

    def __init__(self, engine):
        self.engine, self.rendered, self.videos = engine, [], {}
        self.session = types.SimpleNamespace(post=self._post)

    def _post(self, url, json):
        assert url.endswith("/v1/chat/completions/render")
        self.rendered.append(json)
        part = json["messages"][0]["content"][0]
        frames, meta = server_decodes(part["video_url"]["url"], json["media_io_kwargs"]["video"])
        _, grid, _ = processor_as_vllm_calls_it(self.engine.processor, frames, meta)
        key = f"v{len(self.videos)}"
        self.videos[key] = (frames, meta)
        body = {"features": {"mm_hashes": {"video": [key]},
                             "mm_placeholders": {"video": [{"offset": 0, "length": int(grid.prod()) // 4}]}}}
        return types.SimpleNamespace(status_code=200, json=lambda: body, text="")

    def image_features(self, images, **kwargs):
        raise AssertionError("video prompts must not reach TRL's image path")

    def generate(self, prompts, features=None, n=1, **sampling):
        self.sampling = sampling
        completions, logprobs = [], []
        for ids, feats in zip(prompts, features):
            run = feats["mm_placeholders"]["video"][0]
            assert all(t == self.engine.processor.video_token_id for t in ids[run["offset"]:run["offset"] + run["length"]])
            frames, meta = self.videos[feats["mm_hashes"]["video"][0]]
            for _ in range(n):
                completion, logps = self.engine.sample(ids, frames, meta)
                completions.append(completion)
                logprobs.append([[v] for v in logps])
        return {"prompt_ids": list(prompts), "completion_ids": completions, "logprobs": logprobs,
                "logprob_token_ids": None}

    def reset_prefix_cache(self):
        pass


def vllm_trainer(model_dir, rows, tmp_path, mode, drop_metadata=False, **overrides):
    """A VideoGRPOTrainer whose TRL VLLMGeneration talks to the fake engine (vLLM needs a GPU)."""
    import trl.generation.vllm_generation as vg

    model, processor = load_qwen_vl(model_dir)
    kwargs = dict(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                  max_completion_length=6, learning_rate=1e-2, bf16=False, report_to=[], logging_steps=1,
                  save_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0,
                  reward_funcs=["varied_reward"], curriculum=True, curriculum_difficulty_threshold=0.0)
    kwargs.update(overrides)
    trainer = VideoGRPOTrainer(model=model, reward_funcs=[varied_reward], args=VideoGRPOConfig(**kwargs),
                               train_dataset=rows, processing_class=processor)
    engine = HFEngine(trainer.model, processor, trainer.temperature, 6, drop_metadata=drop_metadata)
    gen = object.__new__(vg.VLLMGeneration)
    gen.__dict__.update(mode=mode, accelerator=trainer.accelerator, model=trainer.model, processing_class=processor,
                        temperature=trainer.temperature, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0,
                        max_completion_length=6, logprobs=0, generation_kwargs={}, structured_outputs_regex=None,
                        enable_sleep_mode=False, _llm_weights_sleeping=False, tensor_parallel_size=1)
    gen.sync_weights = lambda: None
    if mode == "colocate":
        gen.llm = FakeLLM(engine)
    else:
        gen.vllm_client = FakeServer(engine)
    # what TRL's __init__ does under use_vllm=True, then what ours does
    trainer.use_vllm, trainer.vllm_mode, trainer.vllm_generation, trainer._last_loaded_step = True, mode, gen, -1
    tok = processor.tokenizer
    suppress = sorted({tok.convert_tokens_to_ids(t) for t in VISION_TOKENS} - {None, tok.unk_token_id})
    enable_video_rollouts(gen, processor.video_token_id, suppress, trainer.args.vllm_video_jpeg_quality)
    assert trainer.apply_mrope_rule() == "original"  # vLLM's positions for the text after the video
    return trainer, engine, gen


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_vllm_rollouts_carry_the_trainers_video_and_logps_agree(tiny_qwen_dir, rows, tmp_path, monkeypatch, mode):
    import trl.generation.vllm_generation as vg

    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: types.SimpleNamespace(**kw), raising=False)
    trainer, engine, gen = vllm_trainer(tiny_qwen_dir, rows, tmp_path, mode)
    batch = [rows[i] for i in (0, 0, 2, 2)]  # row 0 is hard: the curriculum masks its video (in training)
    trainer.model.train()
    out = trainer._generate_and_score_completions(batch)
    assert len(engine.seen) == 4
    masked = VideoSampling().load(batch[0]["video_path"])
    ids_sent, frames_sent, meta_sent = engine.seen[0]
    assert ids_sent.count(trainer.processing_class.video_token_id) > 0
    assert meta_sent["frames_indices"] == list(masked.metadata.frames_indices)
    assert not np.array_equal(frames_sent, masked.frames)  # curriculum-masked (and JPEG'd in server mode)
    diff = trainer._metrics["train"]["sampling/sampling_logp_difference/max"][-1]
    assert diff < 1e-4, f"vLLM-side and trainer log-probs differ by {diff}"
    assert out["completion_ids"].shape[0] == 4
    vision = set(trainer.processing_class.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS)
    bias = gen.generation_kwargs["logit_bias"]
    assert vision - {None} <= set(bias) and all(v <= -100 for v in bias.values())
    if mode == "server":
        rendered = gen.vllm_client._client.rendered
        assert len(rendered) == 2  # one video per group, sampled n=2 times on the server
        assert all(r["media_io_kwargs"]["video"]["num_frames"] == -1 for r in rendered)
    else:
        assert gen.llm.sampling_params[-1].logit_bias == bias
    # and a training step runs on those rollouts, with the video in the loss forward
    trainer.train()


def test_a_vllm_expansion_other_than_the_trainers_stops_the_run(tiny_qwen_dir, rows, tmp_path, monkeypatch):
    import trl.generation.vllm_generation as vg

    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: types.SimpleNamespace(**kw), raising=False)
    trainer, engine, gen = vllm_trainer(tiny_qwen_dir, rows, tmp_path, "colocate")
    gen.llm._llm.extra_tokens = 4  # e.g. vLLM loaded with another resolution
    trainer.model.train()
    with pytest.raises(ValueError, match="vLLM expanded the video"):
        trainer._generate_and_score_completions([rows[i] for i in (1, 1, 3, 3)])


def test_an_engine_that_loses_the_timestamps_stops_the_run(tiny_qwen_dir, rows, tmp_path, monkeypatch):
    import trl.generation.vllm_generation as vg

    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: types.SimpleNamespace(**kw), raising=False)
    trainer, engine, _ = vllm_trainer(tiny_qwen_dir, rows, tmp_path, "colocate", drop_metadata=True,
                                      vllm_max_logp_difference=1e-3)
    trainer.model.train()
    with pytest.raises(RuntimeError, match="vLLM and the trainer disagree"):
        trainer._generate_and_score_completions([rows[i] for i in (1, 1, 3, 3)])


# ------------------------------------------------------------------ positions of the text after a video
def reference_original_positions(ids, grid, spg, config):
    """Qwen2.5-VL's original rule, written out as a loop: video tokens at (start + t * spg * tokens_per_second,
    start + h, start + w); every text token after a block at max(previous) + 1."""
    merge, tps = config.vision_config.spatial_merge_size, config.vision_config.tokens_per_second
    out, i, cur = [], 0, 0
    while i < len(ids):
        if ids[i] == config.video_token_id:
            t, h, w = grid[0], grid[1] // merge, grid[2] // merge
            for ti in range(t):
                for hi in range(h):
                    for wi in range(w):
                        out.append((cur + int(ti * spg * tps), cur + hi, cur + wi))
            cur = max(max(p) for p in out) + 1
            i += t * h * w
        else:
            out.append((cur, cur, cur))
            cur += 1
            i += 1
    return torch.tensor(out).T


def test_original_text_positions_follow_the_released_rule_and_differ_from_transformers(tiny_qwen_dir, rows):
    from vtg_rl.mllm.mrope import rotary_positions, use_original_text_positions
    from vtg_rl.mllm.video_inputs import render_prompt

    model, processor = load_qwen_vl(tiny_qwen_dir)
    sampling = VideoSampling(fps=4.0)  # long time axis against a 2x2 spatial grid: the rules disagree
    videos = [sampling.load(rows[i]["video_path"]) for i in (0, 2)]
    texts = [render_prompt(processor, rows[i]["prompt"]) for i in (0, 2)]
    batch = build_video_inputs(processor, texts, videos, padding_side="left")
    args = (batch["input_ids"], batch["mm_token_type_ids"])
    kw = dict(video_grid_thw=batch["video_grid_thw"], second_per_grid_ts=batch["second_per_grid_ts"],
              attention_mask=batch["attention_mask"])
    before, _ = model.model.get_rope_index(*args, **kw)
    assert use_original_text_positions(model) and use_original_text_positions(model)  # idempotent
    after, deltas = model.model.get_rope_index(*args, **kw)
    for b in range(2):
        keep = batch["attention_mask"][b].bool()
        ids = batch["input_ids"][b][keep].tolist()
        want = reference_original_positions(ids, batch["video_grid_thw"][b].tolist(),
                                            float(batch["second_per_grid_ts"][b]), model.config)
        assert torch.equal(after[:, b, keep], want)
        assert not torch.equal(before[:, b, keep], want)
        assert int(deltas[b]) == int(want.max()) + 1 - len(ids)
        video = batch["mm_token_type_ids"][b][keep] == 2
        assert torch.equal(after[:, b, keep][:, video], before[:, b, keep][:, video])  # only the text moves
    # every path asks get_rope_index: a plain forward now sees the original positions
    keep = batch["attention_mask"].bool()
    assert torch.equal(rotary_positions(model, batch)[:, keep], after[:, keep])
