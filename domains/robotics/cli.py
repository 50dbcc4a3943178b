"""`uwm data|eval|generate robotics`.

    uwm data robotics --out D --tasks push-v3 --episodes 64      simulate episodes into D/episodes,
                                                                 then write world-model sequences to D
    uwm finetune robotics --data D --init P --out R              (the generic trainer)
    uwm eval robotics --model R/final --episodes T/episodes      open-loop PSNR/SSIM/FID vs baselines
        [--rank-policies expert:0,random,broken] [--plan-seeds 20]   and closed loop in Meta-World
    uwm generate robotics --model R/final -o x.gif   real vs imagined rollout GIF (--task: the model's)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    from simulators.robots import METAWORLD_TASKS

    from .planning import OBJECTIVES, MPCSettings

    if command == "data":
        parser.add_argument("--out", required=True, help="dataset folder: episodes/ and the sequence shards")
        parser.add_argument("--tasks", help=f"comma-separated, e.g. {','.join(METAWORLD_TASKS)} (default: push-v3; "
                                            "with --from-episodes, all of the folder's)")
        parser.add_argument("--episodes", type=int, default=64, help="episodes per task")
        parser.add_argument("--steps", type=int, default=50, help="steps per episode")
        parser.add_argument("--image-size", type=int, default=64)
        parser.add_argument("--camera", help="camera name (default: Meta-World 'corner', gymnasium's own)")
        parser.add_argument("--action-repeat", type=int, default=2, help="simulator steps per action")
        parser.add_argument("--policies", default="expert:0=1,expert:0.3=1,expert:0.6=1,perturbed:0.1=2,random=1",
                            help="policy mix 'kind[:noise]=weight,...' (kinds: expert, perturbed, random, broken, zero, "
                                 "planner: CEM in a copy of the simulator, wm-planner: CEM in --world-model)")
        parser.add_argument("--world-model", help="the world model folder a wm-planner policy plans in (its on-policy "
                                                   "episodes: data to fine-tune that model further)")
        parser.add_argument("--workers", type=int, default=2, help="simulation processes")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--episodes-only", action="store_true", help="simulate, do not write sequences")
        parser.add_argument("--from-episodes", help="write sequences from this episode folder (no simulation)")
        parser.add_argument("--tokenizers", help="reuse the tokenizers of this sequence folder (to fine-tune a model)")
        parser.add_argument("--window", type=int, default=10, help="frames per training sequence")
        parser.add_argument("--stride", type=int, default=4, help="steps between window starts")
        parser.add_argument("--zero-actions", action="store_true", help="write every action as zeros (baseline)")
        parser.add_argument("--grid", type=int, default=8, help="VQ codes per frame side")
        parser.add_argument("--vq-steps", type=int, default=1500, help="image tokenizer training steps")
        parser.add_argument("--context-decoder-steps", type=int, default=800,
                            help="training steps of the frame tokenizer's learned context decoder, written to "
                                 "<out>/context_decoder for --context-decoder (0: none; not with --tokenizers)")
        return
    parser.add_argument("--model", required=True, help="an exported world model folder (final/)")
    parser.add_argument("--history", type=int, default=4, help="observations the model sees at most")
    parser.add_argument("--context-decoder", help="a learned context decoder of the model's frame tokenizer "
                        "(<data>/context_decoder from `uwm data robotics`): imagined frames keep the real scene's detail")
    if command == "eval":
        parser.add_argument("--episodes", required=True, help="held-out episode folder (from `uwm data robotics`)")
        parser.add_argument("--tasks", help="only these tasks (comma-separated)")
        parser.add_argument("--context", type=int, default=2, help="real observations before imagining")
        parser.add_argument("--horizon", type=int, default=8, help="imagined steps")
        parser.add_argument("--per-episode", type=int, default=2, help="windows per episode")
        parser.add_argument("--zero-action-model", help="the same model trained with --zero-actions data (baseline)")
        parser.add_argument("--no-fid", action="store_true", help="skip FID (the Inception judge is slow on CPU)")
        parser.add_argument("--gif", help="write real | model (learned, anchored, plain) | zero-action | copy-last "
                            "frames of a few windows here (learned rows with --context-decoder)")
        closed = parser.add_argument_group("closed loop (in the real simulator)")
        closed.add_argument("--rank-policies", help="comma-separated policies to rank by success in Meta-World and in "
                            "the world model, e.g. expert:0,expert:0.5,random,broken")
        closed.add_argument("--rank-episodes", type=int, default=10, help="seeds per policy")
        closed.add_argument("--rank-stages", metavar="DIR",
                            help="keep each policy's real episodes and the imagined ones here as they finish: the "
                                 "same command run again resumes after them")
        closed.add_argument("--plan-seeds", type=int, default=0, help="MPC episodes: world model vs oracle vs random")
        plan = MPCSettings()  # the experiment's settings
        closed.add_argument("--plan-horizon", type=int, default=plan.horizon, help="imagined steps per candidate")
        closed.add_argument("--plan-population", type=int, default=plan.population, help="candidates per CEM iteration")
        closed.add_argument("--plan-elites", type=int, default=plan.elites,
                            help="best candidates CEM refits to (at most the population)")
        closed.add_argument("--plan-iterations", type=int, default=plan.iterations)
        closed.add_argument("--plan-replan", type=int, default=plan.replan_every, help="actions executed per plan")
        closed.add_argument("--plan-execute", choices=("best", "mean"), default=plan.execute,
                            help="execute the best candidate CEM scored, or the mean of its last elites")
        closed.add_argument("--plan-objective", choices=OBJECTIVES, default=plan.objective,
                            help="score plans by the (predicted) rewards, or by the task's distance to its goal on "
                            "the (imagined) states")
        closed.add_argument("--plan-ensemble", help="more world-model folders (comma-separated, e.g. the --model's "
                            "fine-tuning with other seeds) the planner scores with as a pessimistic ensemble")
        closed.add_argument("--plan-pessimism", type=float, default=plan.pessimism,
                            help="ensemble score: mean return minus this times the models' std (with 2 models, 1 = "
                            "their minimum)")
        closed.add_argument("--plan-stages", metavar="DIR",
                            help="keep each MPC seed's episodes here as they finish: the same command run again "
                                 "resumes after the last one")
        closed.add_argument("--max-steps", type=int, default=50, help="closed-loop episode length")
        closed.add_argument("--action-repeat", type=int, help="simulator steps per action (default: the model's "
                            "training episodes'; another value is refused)")
        parser.add_argument("--out", help="write the metrics JSON here")
    else:
        parser.add_argument("--task", help="the task to imagine (default: the model's, if it was trained on one; one "
                            "it was not trained on is refused)")
        parser.add_argument("--seed", type=int, default=0, help="episode seed (layout)")
        parser.add_argument("--policy", default="expert:0.1", help="policy that chooses the actions")
        parser.add_argument("--steps", type=int, default=16, help="imagined steps")
        parser.add_argument("--action-repeat", type=int, help="simulator steps per action (default: the model's "
                            "training episodes'; another value is refused)")
        parser.add_argument("-o", "--output", required=True, help="GIF to write: real (left) | imagined (right)")


def run(command: str, args: argparse.Namespace) -> None:
    """Run `uwm data|eval|generate robotics` with its parsed options."""
    {"data": _data, "eval": _eval, "generate": _generate}[command](args)


def _data(args) -> None:
    from .episodes import EpisodeConfig, generate_episodes, policy_mix
    from .world_model import write_world_model_dataset

    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    if args.from_episodes:
        episodes = Path(args.from_episodes)
    else:
        config = EpisodeConfig(tasks=tasks or ["push-v3"], episodes=args.episodes, steps=args.steps, image_size=args.image_size,
                               camera=args.camera, action_repeat=args.action_repeat,
                               policies=policy_mix(args.policies), seed=args.seed, world_model=args.world_model)
        episodes = generate_episodes(Path(args.out) / "episodes", config, workers=args.workers)
    summary = {"episodes": str(episodes)}
    if not args.episodes_only:
        tokenizers = None
        if args.tokenizers:
            from core.data import SequenceDataset

            tokenizers = SequenceDataset(args.tokenizers).tokenizers()
        path = write_world_model_dataset(episodes, args.out, args.window, args.stride, tasks, tokenizers,
                                         args.zero_actions, args.grid, args.vq_steps, args.seed)
        summary.update(json.loads((Path(path) / "manifest.json").read_text())["meta"], sequences=str(path))
        if tokenizers is None and args.context_decoder_steps > 0:
            from core.data import SequenceDataset

            from .world_model import fit_context_decoder

            decoder = Path(path) / "context_decoder"
            summary["context_decoder"] = {"path": str(decoder), **fit_context_decoder(
                SequenceDataset(path).tokenizers(), episodes, decoder, args.context_decoder_steps, tasks, args.seed)}
    print(json.dumps(summary, indent=1))


def _eval(args) -> None:
    from .episodes import evaluation_seeds, load_episodes, read_manifest
    from .evaluate import open_loop_eval, write_comparison_gif
    from .world_model import WorldModel

    rank_seeds, plan_seeds = evaluation_seeds("ranking", args.rank_episodes), evaluation_seeds("planning", args.plan_seeds)
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    episodes = load_episodes(args.episodes, tasks)
    if not episodes:
        raise ValueError(f"{args.episodes}: no episodes" + (f" of tasks {tasks}" if tasks else ""))
    wm = WorldModel.load(args.model, max_history=args.history, context_decoder=args.context_decoder)
    action_repeat = _action_repeat(args, wm)
    recorded = int(read_manifest(args.episodes)["config"]["action_repeat"])
    if recorded != action_repeat:
        raise ValueError(f"{args.episodes}: episodes at action repeat {recorded}, the model's at {action_repeat}")
    baseline = (WorldModel.load(args.zero_action_model, max_history=args.history, zero_actions=True,
                                context_decoder=args.context_decoder) if args.zero_action_model else None)
    keep: dict = {}
    results = open_loop_eval(wm, episodes, args.context, args.horizon, args.per_episode, baseline,
                             with_fid=not args.no_fid, keep=keep)
    results.update(model_dir=str(args.model), zero_action_model_dir=args.zero_action_model, episodes_dir=str(args.episodes))
    task = episodes[0].task
    if args.rank_policies:
        from .closed_loop import policy_ranking

        specs = [p for p in args.rank_policies.split(",") if p]
        results["ranking"] = {**policy_ranking(wm, task, specs, rank_seeds, args.max_steps, action_repeat,
                                               stages=args.rank_stages), "task": task}
    if plan_seeds:
        from .closed_loop import planning_benchmark
        from .planning import MPCSettings

        settings = MPCSettings(args.plan_horizon, args.plan_population, min(args.plan_elites, args.plan_population),
                               args.plan_iterations, args.plan_replan, args.plan_objective, args.plan_pessimism,
                               args.plan_execute)
        ensemble = [p for p in (args.plan_ensemble or "").split(",") if p]
        results["planning"] = {"task": task, "ensemble_dirs": ensemble, **planning_benchmark(
            wm, task, plan_seeds, args.max_steps, action_repeat, settings,
            ensemble=[WorldModel.load(path, max_history=args.history) for path in ensemble], stages=args.plan_stages)}
    if args.gif:
        results["gif"] = write_comparison_gif(keep, args.gif, scale=3)
    from core.data import report_json

    report_json(results, args.out)


def _generate(args) -> None:
    import torch

    from core.imageio import to_uint8, write_gif
    from simulators.robots import make_env

    from .evaluate import real_frames
    from .policies import make_policy
    from .world_model import WorldModel

    wm = WorldModel.load(args.model, max_history=args.history, context_decoder=args.context_decoder)
    task = _task(args, wm)
    with make_env(task, wm.image_size, action_repeat=_action_repeat(args, wm)) as env:
        if env.action_space.shape[0] != wm.action_dim:
            raise ValueError(f"{task} has {env.action_space.shape[0]}-d actions, the model {wm.action_dim}-d")
        policy = make_policy(args.policy, task, env.action_space, env=env)
        observation, _ = env.reset(seed=args.seed)
        policy.reset(args.seed)
        frames, states, actions = [observation["image"]], [observation["state"]], []
        for _ in range(args.steps):
            actions.append(policy(observation))
            observation, *_ = env.step(actions[-1])
            frames.append(observation["image"])
        policy.close()
    prompt = wm.prompt(task, np.stack(frames[:1]), np.stack(states[:1]), np.zeros(1, np.float32),
                       np.zeros(1, bool), np.zeros((0, wm.action_dim), np.float32))
    imagined = wm.imagine([prompt], np.stack(actions)[None], anchor=frames[0][None]).frames[0]
    real = real_frames(np.stack(frames[1:]))
    write_gif(to_uint8(torch.cat([real, imagined], dim=-1)), args.output, fps=4, scale=3)
    print(args.output)


def _action_repeat(args, wm) -> int:
    """--action-repeat, else the model's training episodes' (2, the data's default, when not recorded); a value
    other than the recorded one is refused: the model learned that repeat's dynamics."""
    if args.action_repeat is not None and wm.action_repeat is not None and args.action_repeat != wm.action_repeat:
        raise ValueError(f"--action-repeat {args.action_repeat}: {args.model} was trained on episodes at action "
                         f"repeat {wm.action_repeat}")
    return args.action_repeat or wm.action_repeat or 2


def _task(args, wm) -> str:
    """--task, else the model's one training task (push-v3 when not recorded); a task the model was not trained
    on is refused (its prompt names a task the model never saw)."""
    trained = wm.tasks
    if args.task is None:
        if trained and len(trained) > 1:
            raise ValueError(f"{args.model} was trained on {', '.join(trained)}: pick one with --task")
        return trained[0] if trained else "push-v3"
    if trained and args.task not in trained:
        raise ValueError(f"--task {args.task}: {args.model} was trained on {', '.join(trained)} only")
    return args.task
