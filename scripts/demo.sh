#!/usr/bin/env bash
# `make demo`: the whole pipeline on the embedded synthetic world, at demo scale (~30 min on 2 idle cores).
#   world -> tiny models -> cold-start SFT -> reflection + difficulty agents -> GRPO --curriculum
#   -> held-out eval; and the DETR branch: GIRL-DETR supervised -> TPRL, beside a supervised control arm.
# Ends with runs/demo/REPORT.md (trivial baselines first, every stage's gain with its standard error) and
# runs/demo/index.html (report, plots, a viewer of held-out predictions, the reflection agent's flags).
# Each stage is skipped when its output exists, so a rerun reuses finished stages
# (`make clean-demo` starts over). The benchmarks run the same code at full scale; docs/demo.md says
# why the budgets below are what they are.
set -euo pipefail
PY=.venv/bin/python
# DEMO_SCALE=smoke: the same stages at toy sizes (minutes) into runs/demo_smoke, to check the wiring
if [ "${DEMO_SCALE:-full}" = smoke ]; then
  OUT=runs/demo_smoke N=80 SPLITS=0.8,0.05,0.15 SFT_STEPS=20 EVAL=12 AGENT_SAMPLES=16 K=2 GRPO_STEPS=4 GRPO_BATCH=8 G=4 \
    DETR_STEPS=60 TPRL_STEPS=20
else
  # SFT gets most of the time: it is what lifts the model off the baselines (benchmarks/sft_synthetic.py:
  # 0.48-0.51 mIoU after 1,000-1,050 steps of these settings; 400 steps left it below the baselines).
  # 800 steps keep a fresh clone, set-up included, under 30 min. GRPO: the benchmark's 4 prompts x 8
  # rollouts, 100 steps (~2.5 s a step), over the 200 samples the agents reviewed (twice each). The test
  # split is 20% of 2,000 videos, 400 queries, all scored (EVAL): a GRPO gain of a few hundredths is ~3
  # standard errors at that size, and within noise at 240. docs/demo.md has the measured times.
  OUT=runs/demo N=2000 SPLITS=0.75,0.05,0.2 SFT_STEPS=800 EVAL=400 AGENT_SAMPLES=200 K=4 GRPO_STEPS=100 \
    GRPO_BATCH=32 G=8 DETR_STEPS=500 TPRL_STEPS=200
fi
WORLD=$OUT/world
MODELS=$OUT/models
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
T0=$(date +%s)
# stage times: one "name<TAB>seconds<TAB>ran|reused<TAB>load average" line per stage and run (the report shows
# the last measured one): the machine may be shared, and a wall time means little without the load it ran under
TIMES=$OUT/stage_times.tsv
CUR="" CUR_T0=0 CUR_STATE=ran
close_stage() {
  if [ -n "$CUR" ]; then
    printf '%s\t%s\t%s\t%s\n' "$CUR" $(( $(date +%s) - CUR_T0 )) "$CUR_STATE" \
      "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo -)" >> "$TIMES"
  fi
  CUR=""
}
stage() { close_stage; CUR="$1"; CUR_T0=$(date +%s); CUR_STATE=ran; echo; echo "=== demo [$(( CUR_T0 - T0 ))s] $1: $2"; }
done_if() { if [ -e "$1" ]; then echo "reusing $1"; CUR_STATE=reused; return 0; fi; return 1; }

stage world "1/10 synthetic world ($N videos, 10% partially annotated) -> $WORLD"
$PY -m vtg_rl.cli synth --out "$WORLD" --n $N --seed 0 --partial-rate 0.1 --splits $SPLITS

stage models "2/10 tiny local models (Qwen2.5-VL + CLIP, built and reloaded via from_pretrained) -> $MODELS"
$PY -m vtg_rl.cli models build-tiny --out "$MODELS" --kind all

stage sft "3/10 cold-start SFT ($SFT_STEPS steps, batch 16, easy-first pacing, bf16) -> $OUT/sft"
done_if "$OUT/sft/checkpoint-final/config.json" || \
  $PY recipes/sft.py --synthetic_dir "$WORLD" --model_name_or_path "$MODELS/qwen2_5_vl" --output_dir "$OUT/sft" \
    --max_steps $SFT_STEPS --warmup_steps $(( SFT_STEPS / 10 )) --save_steps $SFT_STEPS --eval_before false \
    --lr_scheduler_kwargs "{\"num_decay_steps\": $(( SFT_STEPS * 2 / 5 )), \"min_lr_ratio\": 0.1}" \
    --max_eval_samples $EVAL --logging_steps 25

stage reflection "4/10 boundary reflection agent on $AGENT_SAMPLES train samples -> $OUT/agents/cleaned.jsonl"
done_if "$OUT/agents/cleaned.jsonl" || \
  $PY data_agents/reflect.py --model "$OUT/sft/checkpoint-final" --data "$WORLD/train.jsonl" \
    --out "$OUT/agents/cleaned.jsonl" --max_samples $AGENT_SAMPLES --num_rollouts $K --cache_dir runs/cache/frames

stage difficulty "5/10 difficulty estimation agent -> $OUT/agents/with_difficulty.jsonl"
done_if "$OUT/agents/with_difficulty.jsonl" || \
  $PY data_agents/difficulty.py --model "$OUT/sft/checkpoint-final" --data "$OUT/agents/cleaned.jsonl" \
    --out "$OUT/agents/with_difficulty.jsonl" --num_rollouts $K --cache_dir runs/cache/frames

stage grpo "6/10 GRPO --curriculum ($GRPO_STEPS steps, $(( GRPO_BATCH / G )) prompts x $G rollouts) -> $OUT/grpo"
done_if "$OUT/grpo/checkpoint-final/config.json" || \
  $PY recipes/grpo.py --curriculum --model_name_or_path "$OUT/sft/checkpoint-final" \
    --dataset unified --dataset_path "$OUT/agents/with_difficulty.jsonl" --eval_path "$WORLD/test.jsonl" \
    --output_dir "$OUT/grpo" --max_steps $GRPO_STEPS --per_device_train_batch_size $GRPO_BATCH --num_generations $G \
    --max_eval_samples $EVAL --eval_before false --logging_steps 2 --save_steps $GRPO_STEPS

# The DETR branch needs queries its supervised stage never saw for post-training (benchmarks/tprl_synthetic.py:
# on the supervised stage's own queries TPRL has little to learn): the train split's videos are halved.
stage head_split "7/10 train split halved by video: supervised head / RL split -> $WORLD/train_{sup,rl}.jsonl"
done_if "$WORLD/train_rl.jsonl" || $PY -m vtg_rl.cli data split "$WORLD/train.jsonl" --names sup,rl

HEAD_DATA=(--dataset unified --eval_file "$WORLD/test.jsonl" --clip_model "$MODELS/clip" --feature_root "$OUT/features")
stage girl_detr "8/10 GIRL-DETR, supervised ($DETR_STEPS steps) on train_sup -> $OUT/girl_detr"
done_if "$OUT/girl_detr/final" || \
  $PY recipes/girl_detr.py "${HEAD_DATA[@]}" --train_file "$WORLD/train_sup.jsonl" \
    --output_dir "$OUT/girl_detr" --max_steps $DETR_STEPS --eval_steps 400 --save_steps $DETR_STEPS

stage tprl "9/10 TPRL ($TPRL_STEPS steps, backbone frozen) on the RL split -> $OUT/tprl"
done_if "$OUT/tprl/final" || \
  $PY recipes/tprl.py "${HEAD_DATA[@]}" --train_file "$WORLD/train_rl.jsonl" \
    --supervised_checkpoint "$OUT/girl_detr/final" --output_dir "$OUT/tprl" --max_steps $TPRL_STEPS \
    --eval_strategy no --save_steps $TPRL_STEPS

# TPRL's control arm (as in benchmarks/tprl_synthetic.py): the supervised loss on the same head parameters,
# the same RL split, TPRL's optimiser settings and step count. Is it the RL, or just more data for the head?
stage control "10/10 control arm: supervised loss, same head parameters and RL split -> $OUT/head_control"
done_if "$OUT/head_control/final" || \
  $PY recipes/tprl.py --control_arm "${HEAD_DATA[@]}" --train_file "$WORLD/train_rl.jsonl" \
    --supervised_checkpoint "$OUT/girl_detr/final" --output_dir "$OUT/head_control" --max_steps $TPRL_STEPS \
    --eval_strategy no --save_steps $TPRL_STEPS

stage report "report + index.html"
$PY -m vtg_rl.report "$OUT"
close_stage
echo "demo done in $(( $(date +%s) - T0 )) s: open $OUT/index.html (or $OUT/REPORT.md)"
