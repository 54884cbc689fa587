"""``VideoGRPOConfig``: TRL's ``GRPOConfig`` plus the video, curriculum, difficulty-control and vLLM-video
options of :class:`vtg_rl.mllm.grpo.VideoGRPOTrainer` (config beside trainer, as TRL lays them out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from trl import GRPOConfig

from vtg_rl.mllm.curriculum import CurriculumConfig
from vtg_rl.mllm.difficulty_filter import check_band
from vtg_rl.mllm.video_source import VideoTrainingArguments


@dataclass
class VideoGRPOConfig(VideoTrainingArguments, GRPOConfig):
    """``GRPOConfig`` plus video sampling (:class:`VideoTrainingArguments`), curriculum masking and
    difficulty control."""

    shared_prefix: Optional[bool] = field(default=None, metadata={
        "help": "compute each group's prompt (video + text) once in generation and every log-prob forward "
                "(vtg_rl.mllm.shared_prefix); False = the naive G-times path; unset = on for the model families "
                "that support it exactly (an explicit True on another family is refused at start-up)"})
    vision_cache_size: int = field(default=256, metadata={
        "help": "with shared_prefix and a frozen vision tower: videos whose features are kept (LRU); 0 = off"})
    reward_funcs: list[str] = field(default_factory=lambda: ["iou_reward", "format_reward"], metadata={
        "help": "names in vtg_rl.rewards.REWARD_FUNCS (weights: reward_weights)"})
    # curriculum (VideoTG-R1)
    curriculum: bool = field(default=False, metadata={"help": "mask hard samples' videos away from the span early"})
    curriculum_difficulty_threshold: float = field(default=0.5, metadata={
        "help": "a sample is hard when difficulty > this (unknown difficulty: its 'hard' flag)"})
    curriculum_full_visible_at: float = field(default=0.5, metadata={
        "help": "fraction of training at which the whole video is visible again"})
    curriculum_initial_context: float = field(default=0.0, metadata={
        "help": "fraction of the out-of-span video visible at step 0"})
    curriculum_fill: str = field(default="video_mean", metadata={"help": "'video_mean' or 'grey' blank frames"})
    # difficulty control
    min_difficulty: Optional[float] = field(default=None, metadata={"help": "drop samples easier than this"})
    max_difficulty: Optional[float] = field(default=None, metadata={"help": "drop samples harder than this"})
    difficulty_reweight: str = field(default="none", metadata={"help": "'none', 'mid' or 'hard' resampling"})
    drop_uniform_groups: bool = field(default=False, metadata={
        "help": "drop groups whose rewards are all ~0 or all ~1 from the loss (no preference signal)"})
    uniform_reward_func: str = field(default="iou_reward", metadata={
        "help": "reward function judged for uniform groups ('total' = the weighted sum)"})
    uniform_low: float = field(default=0.05, metadata={"help": "all rewards <= this: group too hard"})
    uniform_high: float = field(default=0.95, metadata={"help": "all rewards >= this: group too easy"})
    # vLLM rollouts for video
    vllm_video_jpeg_quality: int = field(default=95, metadata={
        "help": "server mode: JPEG quality of the frames sent to the vLLM server (the trainer uses the same "
                "decoded frames)"})
    mrope_text_positions: str = field(default="auto", metadata={
        "help": "where text after a video starts in Qwen2.5-VL's 3-D positions: 'model' (transformers' rule, "
                "which the project's checkpoints are trained with), 'original' (max + 1: the released Qwen2.5-VL "
                "and vLLM; vtg_rl.mllm.mrope), 'auto' = 'original' with use_vllm, else 'model'"})
    vllm_max_logp_difference: Optional[float] = field(default=0.5, metadata={
        "help": "stop when the first vLLM rollout batch's mean |logp_vLLM - logp_trainer| exceeds this "
                "(video preprocessing differs between vLLM and the trainer); None = no check"})

    def __post_init__(self):
        super().__post_init__()
        check_band(self.uniform_low, self.uniform_high)
        if self.mrope_text_positions not in ("auto", "model", "original"):
            raise ValueError(f"mrope_text_positions must be 'auto', 'model' or 'original', "
                             f"got {self.mrope_text_positions!r}")
        if self.curriculum:
            self.curriculum_config()  # validate early, not at the first step

    def curriculum_config(self) -> CurriculumConfig:
        return CurriculumConfig(difficulty_threshold=self.curriculum_difficulty_threshold,
                                full_visible_at=self.curriculum_full_visible_at,
                                initial_context=self.curriculum_initial_context, fill=self.curriculum_fill)
