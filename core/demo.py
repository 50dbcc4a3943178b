"""`uwm demo`: the whole pipeline at tiny scale on generated data, in a few minutes on 2 CPU cores.

Fit tokenizers -> pretrain (locate, caption, draw) -> fine-tune (predict: image + action -> next
image) -> generate -> evaluate, writing everything and a summary to one folder; then the robotics
world model at tiny scale (Meta-World push-v3 in MuJoCo: episodes -> world model -> open-loop
evaluation -> the expert policy run inside the world model), the driving model at tiny scale
(highway-env scenes -> a nuScenes-format folder -> joint plan + camera prediction -> open-loop metrics
and closed-loop episodes), and the medical model at tiny scale (real Open-i reports <-> rendered chest
X-rays, both directions, held-out evaluation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from . import toy
from .config import load_config
from .data import SequenceDataset, write_json_atomic
from .imageio import write_png
from .pretrained import load_pretrained
from .provenance import provenance
from .training import Trainer

__all__ = ["run_demo"]

PRETRAIN_TASKS = ("locate", "caption", "draw")
FINETUNE_TASKS = ("predict",)


def _train(name: str, data: Path, out: Path, overrides: list[str]) -> dict:
    config = load_config("demo", [f"data.path={data}", *overrides])
    config.name, config.out_dir = name, str(out)
    return Trainer(config, SequenceDataset(data), out).fit()


def _write_grids(images: dict, out: Path, rows: int = 6) -> list[str]:
    """One PNG per task: truth | generated, for the first `rows` evaluation scenes."""
    written = []
    for task, (truth, generated) in images.items():
        path = out / f"{task}_truth_vs_generated.png"
        write_png(torch.cat([torch.cat([t, g], dim=2) for t, g in zip(truth[:rows], generated[:rows])], dim=1), path)
        written.append(str(path))
    return written


def run_demo(out: Path, quick: bool = False) -> dict:
    """Run the demo into `out`; returns (and writes) the summary."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    scenes, vq_steps = (192, 120) if quick else (1024, 300)
    pretrain_steps, finetune_steps = (80, 60) if quick else (600, 400)
    image_size = toy.IMAGE_SIZE

    print(f"[1/8] data + tokenizers -> {out / 'data'}")
    pretrain_data = toy.write_toy_dataset(out / "data" / "pretrain", scenes, PRETRAIN_TASKS, image_size, vq_steps)
    tokenizers = SequenceDataset(pretrain_data).tokenizers()
    finetune_data = toy.write_toy_dataset(out / "data" / "finetune", 2 * scenes, FINETUNE_TASKS, image_size,
                                          seed=1, tokenizers=tokenizers)
    print("[2/8] pretrain (locate, caption, draw)")
    pretrain = _train("demo-pretrain", pretrain_data, out / "pretrain", [f"train.steps={pretrain_steps}"])
    print("[3/8] fine-tune (predict: image + action -> next image)")
    finetune = _train("demo-finetune", finetune_data, out / "finetune",
                      [f"train.steps={finetune_steps}", f"finetune.init={out / 'pretrain' / 'final'}", "finetune.mode=full"])
    print("[4/8] generate and evaluate on fresh scenes")
    eval_scenes = 32 if quick else 64
    images: dict = {}
    model, tokenizers = load_pretrained(out / "pretrain" / "final")
    pretrain_eval = toy.evaluate_toy(model, tokenizers, PRETRAIN_TASKS, eval_scenes, image_size, images=images)
    model, tokenizers = load_pretrained(out / "finetune" / "final")
    finetune_eval = toy.evaluate_toy(model, tokenizers, FINETUNE_TASKS, eval_scenes, image_size, images=images)
    print("[5/8] robotics: Meta-World push-v3 world model")
    from domains.robotics.demo import run_robotics_demo

    robotics = run_robotics_demo(out / "robotics", quick, _train)
    print("[6/8] driving: joint plan + front-camera prediction (highway-env -> nuScenes format)")
    from domains.driving.demo import run_driving_demo

    driving = run_driving_demo(out / "driving", quick, _train)
    print("[7/8] medical: report <-> chest X-ray")
    from domains.medical.demo import run_medical_demo

    medical = run_medical_demo(out / "medical", quick, _train)
    print("[8/8] write samples and summary")
    samples = _write_grids(images, out)
    manifest = json.loads((Path(pretrain_data) / "manifest.json").read_text())
    summary = {
        **provenance(),
        "quick": quick,
        "image_tokenizer": manifest["meta"]["image_tokenizer"],
        "pretrain": pretrain, "finetune": finetune,
        "eval": {**pretrain_eval, **finetune_eval},
        "samples": samples,
        "robotics": robotics,
        "driving": driving,
        "medical": medical,
        "wall_s": time.perf_counter() - started,
    }
    write_json_atomic(out / "summary.json", summary)
    e = summary["eval"]
    lines = [
        f"uwm demo ({'quick' if quick else 'full'}) in {summary['wall_s']:.0f} s -> {out}",
        f"  image tokenizer held-out PSNR  {summary['image_tokenizer'].get('psnr_held_out', float('nan')):.1f} dB",
        f"  pretrain loss {pretrain['final_loss']:.3f} (val {pretrain['val_loss']:.3f}), "
        f"finetune loss {finetune['final_loss']:.3f}",
        f"  locate accuracy   {e['locate_accuracy']:.2f}",
        f"  caption accuracy  {e['caption_accuracy']:.2f}",
        f"  draw (caption -> image, CFG {e['draw_cfg_scale']}): judge cell accuracy {e['draw_cell_accuracy']:.2f}, "
        f"colour accuracy {e['draw_color_accuracy']:.2f}, PSNR {e['draw_psnr']:.1f} dB; "
        f"teacher-forced token accuracy {e['draw_teacher_forced_token_accuracy']:.3f}",
        f"  predict (image + action -> next image): judge cell accuracy {e['predict_cell_accuracy']:.2f} "
        f"(copy-last-frame {e['predict_copy_last_cell_accuracy']:.2f}), PSNR {e['predict_psnr']:.1f} dB "
        f"(copy-last-frame {e['predict_copy_last_psnr']:.1f} dB, VQ ceiling {e['predict_vq_ceiling_psnr']:.1f} dB); "
        f"teacher-forced token accuracy {e['predict_teacher_forced_token_accuracy']:.3f}",
    ]
    ol = robotics["open_loop"]
    lines.append(f"  robotics (push-v3, 32 px, {ol['windows']} held-out windows): open-loop PSNR at steps 1..{ol['horizon']} "
                 + " ".join(f"{v:.1f}" for v in ol["model_learned"]["psnr"]) + " dB with the context decoder ("
                 + " ".join(f"{v:.1f}" for v in ol["model_anchored"]["psnr"]) + " anchored, "
                 + " ".join(f"{v:.1f}" for v in ol["model"]["psnr"]) + " plain) vs copy-last-frame "
                 + " ".join(f"{v:.1f}" for v in ol["copy_last"]["psnr"]) + f" dB; real | imagined GIF {robotics['gif']}")
    plan, frames, loop = driving["open_loop"]["planning"], driving["open_loop"]["frames"], driving["closed_loop"]
    lines.append(f"  driving ({driving['open_loop']['num_test_samples']} held-out key frames, 32 px): L2 (ST-P3 avg) "
                 f"{plan['model']['l2_m']['stp3']['avg']:.2f} m vs constant velocity "
                 f"{plan['constant_velocity']['l2_m']['stp3']['avg']:.2f} m, ego-status MLP "
                 f"{plan['ego_status_mlp']['l2_m']['stp3']['avg']:.2f} m; "
                 f"frame PSNR at 1 s {frames['model']['psnr_db'][1]:.1f} dB "
                 f"(copy-last {frames['copy_last']['psnr_db'][1]:.1f} dB); closed-loop score "
                 f"{loop['model']['score']:.2f} (IDM {loop['idm']['score']:.2f}, constant velocity "
                 f"{loop['constant_velocity']['score']:.2f}); plans {driving['samples']['trajectories']}")
    if "evaluation" in medical:
        m = medical["evaluation"]
        reports, images = m["image_to_report"], m["report_to_image"]
        lines.append(f"  medical ({m['num_held_out']} held-out Open-i reports, 32 px renders): image -> report BLEU-4 "
                     f"{reports['model']['bleu_4']:.3f}, ROUGE-L {reports['model']['rouge_l']:.3f}, clinical-efficacy "
                     f"macro-F1 {reports['model']['clinical_efficacy']['macro_f1']:.2f} (retrieval "
                     f"{reports['retrieval']['clinical_efficacy']['macro_f1']:.2f}); report -> image judge macro-F1 "
                     f"{images['model']['judge']['macro_f1']:.2f} (on the reference images "
                     f"{images['reference']['judge']['macro_f1']:.2f}, mean-image baseline "
                     f"{images['mean_image']['judge']['macro_f1']:.2f}); grid {medical['samples']['report_to_image']}")
    else:
        lines.append(f"  medical: skipped ({medical['skipped']})")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary
