"""Fault injection: ``kill -9`` every long job at random points, resume it, compare with an uninterrupted run.

    python benchmarks/faults.py                        # all five jobs, 3 kills each (~10 min on 1 core)
    python benchmarks/faults.py --jobs sft grpo --kills 2 --seed 1

Jobs: cold-start SFT (``recipes/sft.py``), GRPO (``recipes/grpo.py``, beta > 0 and 2 iterations per
rollout batch, so some checkpoints fall inside a generation cycle), supervised GIRL-DETR
(``recipes/girl_detr.py``), and the two data agents (``data_agents/reflect.py``,
``data_agents/difficulty.py``), all on tiny local models and a 40-sample synthetic world.

For each job an uninterrupted run of the same seed is the reference. The faulted run is started, killed
with SIGKILL at ``--kills`` random points (seeded: a random step / record count, then a random fraction
of a step's time, so kills also land inside saves), and restarted after each kill the way a user would:
SFT and GRPO with ``--resume_from_checkpoint <last complete checkpoint>`` (from scratch when there is
none yet), GIRL-DETR with ``--resume_from_checkpoint auto``, the agents with the same command.

Measured per job (``benchmarks/results/faults.json``):

* ``max_abs_weight_diff_vs_uninterrupted``: the largest |difference| over all tensors of the final model
  (``null`` for the agents, whose output records are compared instead: ``records_identical``);
* ``lost_samples`` / ``duplicated_samples``: training samples the uninterrupted run trained on that the
  faulted run's surviving steps never saw / saw more often. The recipes run under a small recorder
  (``RECORDER`` below) that logs the sample ids of every training batch with the step it was drawn for;
  the surviving record of a step is the one of the last attempt that trained it (steps after the last
  checkpoint are redone after a resume). For the agents: qids of the reference output missing from the
  resumed one, and qids written more than once to the append-only partial file;
* ``order_identical`` (every step saw the same samples in the same order) and ``loss_curve_identical``
  (every logged value of every step equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: run a recipe with a recorder of the training batches (sample ids + the step they were drawn for);
#: GRPO also gets a deterministic hashed reward so every group has non-zero advantages (the tiny random
#: policy never writes a well-formed answer, so IoU and format rewards alone are all zero)
RECORDER = """
import collections, hashlib, json, os, runpy, sys
import transformers, trl
import vtg_rl.rewards as rewards

RECORD = os.environ["VTG_FAULTS_RECORD"]

def varied_reward(completions, **kwargs):
    return [int(hashlib.md5(c[0]['content'].encode()).hexdigest()[:6], 16) / 0xFFFFFF for c in completions]

rewards.REWARD_FUNCS["varied_reward"] = varied_reward

def _id(row):
    if isinstance(row, dict):
        return row.get("qid") or (row.get("meta") or {}).get("qid")
    return None

_pending = collections.deque()  # ids of collated batches, in the order training will consume them

def _recording(cls):
    original = cls.__dict__["get_train_dataloader"]
    def get_train_dataloader(self):
        collate = self.data_collator
        def recording(rows):
            _pending.append([_id(r) for r in rows])
            return collate(rows)
        self.data_collator = recording
        try:
            return original(self)
        finally:
            self.data_collator = collate
    cls.get_train_dataloader = get_train_dataloader

_training_step = transformers.Trainer.training_step

def training_step(self, *args, **kwargs):
    # the data loader collates one batch ahead of training: attribute each batch when it is trained on
    ids = _pending.popleft() if _pending else None
    with open(RECORD, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "step": self.state.global_step, "ids": ids}) + "\\n")
    return _training_step(self, *args, **kwargs)

transformers.Trainer.training_step = training_step
_recording(transformers.Trainer)
_recording(trl.GRPOTrainer)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""

TIMING_KEYS = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
               "total_flos")


# --------------------------------------------------------------------------- jobs
def job_specs(work: Path, assets: dict) -> dict:
    world, tiny, clip = str(assets["world"]), str(assets["tiny_qwen"]), str(assets["tiny_clip"])
    train = str(Path(world) / "train.jsonl")
    frames = str(work / "frames")
    common_llm = ["--model_name_or_path", tiny, "--synthetic_dir", world, "--max_eval_samples", "0",
                  "--eval_before", "false", "--logging_steps", "1", "--use_cpu", "true", "--report_to", "none",
                  "--frame_cache_dir", frames, "--disable_tqdm", "true", "--seed", "0", "--save_total_limit", "3"]
    agent_common = ["--model", tiny, "--data", train, "--max_samples", "8", "--num_rollouts", "2",
                    "--max_new_tokens", "16", "--batch_size", "2", "--device", "cpu", "--no_progress"]
    return {
        "sft": {"kind": "trainer", "script": "recipes/sft.py", "steps": 18, "final": "checkpoint-final",
                "args": common_llm + ["--max_train_samples", "8", "--max_steps", "18", "--save_steps", "3",
                                      "--per_device_train_batch_size", "2", "--learning_rate", "1e-3", "--bf16", "false"],
                "resume": "path"},
        "grpo": {"kind": "trainer", "script": "recipes/grpo.py", "steps": 12, "final": "checkpoint-final",
                 "args": common_llm + ["--max_train_samples", "6", "--max_steps", "12", "--save_steps", "3",
                                       "--per_device_train_batch_size", "4", "--num_generations", "2",
                                       "--max_completion_length", "8", "--learning_rate", "1e-3", "--beta", "0.04",
                                       "--num_iterations", "2", "--curriculum", "true",
                                       "--reward_funcs", "varied_reward", "format_reward",
                                       "--reward_weights", "1.0", "0.1"],
                 "resume": "path"},
        "girl_detr": {"kind": "trainer", "script": "recipes/girl_detr.py", "steps": 30, "final": "final",
                      "args": ["--synthetic_dir", world, "--clip_model", clip, "--feature_root", str(work / "features"),
                               "--clip_len", "1.0", "--patch_grid", "0", "--hidden_dim", "32", "--num_heads", "4",
                               "--ffn_dim", "64", "--max_steps", "30", "--save_steps", "5", "--warmup_steps", "3",
                               "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
                               "--logging_steps", "1", "--eval_strategy", "no", "--report_to", "none",
                               "--use_cpu", "true", "--disable_tqdm", "true", "--seed", "0", "--save_total_limit", "3"],
                      "resume": "auto"},
        "reflect_agent": {"kind": "agent", "script": "data_agents/reflect.py", "samples": 8,
                          "args": agent_common + ["--verify", "none"]},
        "difficulty_agent": {"kind": "agent", "script": "data_agents/difficulty.py", "samples": 8,
                             "args": agent_common},
    }


def build_assets(work: Path) -> dict:
    from vtg_rl.data.synthetic import generate_world
    from vtg_rl.models.tiny_clip import build_tiny_clip
    from vtg_rl.models.tiny_qwen import build_tiny_qwen2_5_vl

    paths = generate_world(work / "world", n=40, seed=0)
    return {"world": Path(paths["train"]).parent, "tiny_qwen": build_tiny_qwen2_5_vl(work / "tiny_qwen", seed=0),
            "tiny_clip": build_tiny_clip(work / "tiny_clip", seed=0)}


# --------------------------------------------------------------------------- processes
def env_for(record: Path) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONHASHSEED="0",
               VTG_FAULTS_RECORD=str(record))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def launch(spec: dict, out: Path, record: Path, log: Path, extra: list[str]) -> subprocess.Popen:
    out_flag = ["--output_dir", str(out)] if spec["kind"] == "trainer" else ["--out", str(out / "out.jsonl")]
    argv = [sys.executable, "-c", RECORDER, spec["script"], *spec["args"], *out_flag, *extra]
    f = open(log, "ab")
    proc = subprocess.Popen(argv, cwd=REPO, env=env_for(record), stdout=f, stderr=subprocess.STDOUT)
    proc._log = f  # closed by finish()
    return proc


def finish(proc: subprocess.Popen) -> int:
    rc = proc.wait()
    proc._log.close()
    return rc


def trainer_progress(record: Path, pid: int) -> int:
    """Highest step the process ``pid`` has drawn a batch for (its recorder lines)."""
    best = -1
    if record.is_file():
        for line in record.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r["pid"] == pid:
                best = max(best, r["step"])
    return best


def agent_progress(out: Path) -> int:
    partial = out / "out.partial.jsonl"
    return sum(1 for line in partial.read_text().splitlines() if line.endswith("}")) if partial.is_file() else 0


def plain_command(spec: dict, out: str) -> str:
    out_flag = ["--output_dir", out] if spec["kind"] == "trainer" else ["--out", f"{out}/out.jsonl"]
    return " ".join(["OMP_NUM_THREADS=1", "python", spec["script"], *spec["args"], *out_flag])


def resume_args(spec: dict, out: Path) -> list[str]:
    from vtg_rl.training.checkpoints import last_complete_checkpoint

    if spec["kind"] == "agent":
        return []
    if spec["resume"] == "auto":
        return ["--resume_from_checkpoint", "auto"]
    found = last_complete_checkpoint(out)
    return ["--resume_from_checkpoint", found] if found else []


def incomplete_checkpoints(out: Path) -> list[str]:
    """checkpoint-N folders a kill cut short (no whole trainer_state.json)."""
    from vtg_rl.training.checkpoints import is_complete_checkpoint

    return [p.name for p in out.glob("checkpoint-[0-9]*") if not is_complete_checkpoint(p)]


def resumed_label(spec: dict, out: Path) -> str:
    """Where the next attempt starts: the checkpoint a resume loads, 'scratch', or 'rerun' (agents)."""
    from vtg_rl.training.checkpoints import last_complete_checkpoint

    if spec["kind"] == "agent":
        return "rerun"
    found = last_complete_checkpoint(out)
    return Path(found).name if found else "scratch"


def run_faulted(spec: dict, out: Path, record: Path, log: Path, kills: int, rng: random.Random) -> dict:
    """Run to the end, killing at ``kills`` random points and restarting after each."""
    total = spec["steps"] if spec["kind"] == "trainer" else spec["samples"]
    targets = sorted(rng.sample(range(1, total), kills))  # a step / record count per kill, increasing
    attempts, delivered, resumed_from, torn = [], 0, [], 0
    extra: list[str] = []
    while True:
        proc = launch(spec, out, record, log, extra)
        attempts.append(proc.pid)
        if delivered < len(targets):
            target, fraction = targets[delivered], rng.random()
            progress = (lambda: trainer_progress(record, proc.pid)) if spec["kind"] == "trainer" \
                else (lambda: agent_progress(out))
            while proc.poll() is None and progress() < target:
                time.sleep(0.02)
            time.sleep(fraction * 0.3)  # a random moment within the next ~step (saves included)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                delivered += 1
                finish(proc)
                torn += bool(spec["kind"] == "trainer" and incomplete_checkpoints(out))
                extra = resume_args(spec, out)
                resumed_from.append(resumed_label(spec, out))
                continue
        rc = finish(proc)
        if rc != 0:
            raise RuntimeError(f"{spec['script']} failed (rc {rc}); see {log}")
        return {"kills": delivered, "attempts": len(attempts), "attempt_pids": attempts,
                "resumed_from": resumed_from, "kill_targets": targets, "kills_during_a_save": torn}


# --------------------------------------------------------------------------- comparisons
def surviving_batches(record: Path, pids: list[int]) -> dict[int, list]:
    """step -> sample ids trained at that step by the last attempt that trained it."""
    order = {pid: i for i, pid in enumerate(pids)}
    best: dict[int, tuple[int, list]] = {}
    per_attempt_step: dict[tuple[int, int], list] = {}
    for line in record.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        key = (order.get(r["pid"], -1), r["step"])
        per_attempt_step.setdefault(key, []).extend(r["ids"])
    for (attempt, step), ids in per_attempt_step.items():
        if step not in best or attempt > best[step][0]:
            best[step] = (attempt, ids)
    return {step: ids for step, (_, ids) in best.items()}


def log_curve(out: Path) -> list[dict]:
    import re

    checkpoints = [p for p in out.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name)]
    last = max(checkpoints, key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history if "train_runtime" not in h]


def max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if set(x) != set(y):
        return float("inf")
    return max(((x[k].double() - y[k].double()).abs().max().item() if x[k].numel() else 0.0) for k in x)


def compare_trainer(spec, ref_out, ref_record, ref_pid, out, record, faulted) -> dict:
    ref = surviving_batches(ref_record, [ref_pid])
    got = surviving_batches(record, faulted["attempt_pids"])
    ref_count = Counter(i for ids in ref.values() for i in ids)
    got_count = Counter(i for ids in got.values() for i in ids)
    return {"max_abs_weight_diff_vs_uninterrupted": max_weight_diff(ref_out / spec["final"], out / spec["final"]),
            "lost_samples": sum((ref_count - got_count).values()),
            "duplicated_samples": sum((got_count - ref_count).values()),
            "order_identical": ref == got, "loss_curve_identical": log_curve(ref_out) == log_curve(out),
            "steps": len(got)}


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_agent(ref_out: Path, out: Path) -> dict:
    ref = read_records(ref_out / "out.partial.jsonl")
    raw = [json.loads(line) for line in (out / "out.partial.jsonl").read_text().splitlines()
           if line.strip().endswith("}")]
    ref_q, got_q = Counter(r["qid"] for r in ref), Counter(r["qid"] for r in raw)
    by_qid = {r["qid"]: r for r in raw}
    ref_final, got_final = read_records(ref_out / "out.jsonl"), read_records(out / "out.jsonl")
    return {"max_abs_weight_diff_vs_uninterrupted": None,
            "lost_samples": sum((ref_q - got_q).values()),
            "duplicated_samples": sum(n - 1 for n in got_q.values() if n > 1),
            "records_identical": all(by_qid.get(r["qid"]) == r for r in ref) and ref_final == got_final,
            "records_differing": sum(by_qid.get(r["qid"]) != r for r in ref),
            # how much the records say: with the tiny random model most rollouts are malformed (window null),
            # and equal records of null windows do not show that the rollouts themselves were equal
            "rollout_windows_parsed": sum(w is not None for r in ref for w in (r.get("windows") or [])),
            "rollout_windows": sum(len(r.get("windows") or []) for r in ref),
            "samples": len(ref)}


# --------------------------------------------------------------------------- main
def run_job(name: str, spec: dict, work: Path, kills: int, rng: random.Random) -> dict:
    jd = work / name
    jd.mkdir(parents=True, exist_ok=True)
    ref_out, out = jd / "uninterrupted", jd / "faulted"
    for d in (ref_out, out):
        d.mkdir(exist_ok=True)
    t0 = time.time()
    proc = launch(spec, ref_out, jd / "uninterrupted.record.jsonl", jd / "uninterrupted.log", [])
    ref_pid = proc.pid
    if finish(proc) != 0:
        raise RuntimeError(f"{spec['script']} failed; see {jd / 'uninterrupted.log'}")
    ref_wall = time.time() - t0
    t0 = time.time()
    faulted = run_faulted(spec, out, jd / "faulted.record.jsonl", jd / "faulted.log", kills, rng)
    result = {"job": name, "command": plain_command(spec, "OUT"),
              "run_as": "python -c RECORDER " + spec["script"] + " ... (benchmarks/faults.py: records each trained "
                        "batch; registers varied_reward)",
              "kills": faulted["kills"], "kills_during_a_save": faulted["kills_during_a_save"],
              "attempts": faulted["attempts"], "resumed_from": faulted["resumed_from"],
              "kill_targets": faulted["kill_targets"], "uninterrupted_wall_s": round(ref_wall, 1),
              "faulted_wall_s": round(time.time() - t0, 1)}
    if spec["kind"] == "trainer":
        result.update(compare_trainer(spec, ref_out, jd / "uninterrupted.record.jsonl", ref_pid, out,
                                      jd / "faulted.record.jsonl", faulted))
    else:
        result.update(compare_agent(ref_out, out))
    return result


def print_table(rows: list[dict]) -> None:
    head = f"{'job':<17} {'kills':>5} {'max|dw|':>9} {'lost':>5} {'dup':>4} {'order':>6} {'curve/rec':>9} {'resumed from'}"
    print(head)
    print("-" * len(head))
    for r in rows:
        dw = r["max_abs_weight_diff_vs_uninterrupted"]
        same = r.get("loss_curve_identical", r.get("records_identical"))
        print(f"{r['job']:<17} {r['kills']:>5} {'n/a' if dw is None else f'{dw:.1e}':>9} {r['lost_samples']:>5} "
              f"{r['duplicated_samples']:>4} {str(r.get('order_identical', '-')):>6} {str(same):>9} "
              f"{', '.join(r['resumed_from'])}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", nargs="+", default=["sft", "grpo", "girl_detr", "reflect_agent", "difficulty_agent"])
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs per job")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    p.add_argument("--work_dir", default=None, help="where runs go (default: a fresh temporary folder)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "faults.json"))
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="vtg_rl_faults_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    assets = build_assets(work)
    specs = job_specs(work, assets)
    unknown = sorted(set(args.jobs) - set(specs))
    if unknown:
        raise SystemExit(f"unknown job(s) {unknown}; choose from {sorted(specs)}")
    rows = []
    for i, name in enumerate(args.jobs):
        rng = random.Random(args.seed * 1000 + i)
        print(f"[{time.time() - t0:6.0f} s] {name} ...", flush=True)
        rows.append(run_job(name, specs[name], work, args.kills, rng))
    print_table(rows)
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
              f"{platform.platform()}", "threads_per_run": 1, "seed": args.seed, "kills_per_job": args.kills,
              "command": "OMP_NUM_THREADS=1 python benchmarks/faults.py " + " ".join(argv or sys.argv[1:]),
              "wall_s": round(time.time() - t0, 1), "work_dir": str(work), "jobs": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['wall_s']:.0f} s)")
    ok = all(r["lost_samples"] == 0 and r["duplicated_samples"] == 0 and
             (r["max_abs_weight_diff_vs_uninterrupted"] in (None, 0.0)) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
