"""Boundary Reflection Agent: flag partially annotated samples before RL (VideoTG-R1).

    python data_agents/reflect.py                                  # SFT checkpoint, synthetic train split
    python data_agents/reflect.py --model runs/sft/checkpoint-final --data train.jsonl \
        --out runs/agents/train.clean.jsonl --num_rollouts 8 --min_verified 0.5
    python data_agents/reflect.py --verify_features pixels --min_verification 0.5   # colour-grid check
    python data_agents/reflect.py --verify none --min_agreement 0.5                 # agreement alone

Each outside answer is verified against the annotated span on the unmasked video (--verify appearance,
the default; features: --verify_features vision|pixels): a second occurrence looks like the annotation,
a look-alike does not. Writes the cleaned dataset (--out), <out>.flagged.jsonl for review (found span,
its verification score, every prediction with its score) and <out>.summary.json.
Resumable: rerun the same command after an interruption. See vtg_rl/agents/reflection.py.
"""

import sys

from vtg_rl.agents.cli import run_agent


def main(argv=None) -> int:
    return run_agent("reflection", argv)


if __name__ == "__main__":
    sys.exit(main())
