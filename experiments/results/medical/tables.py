"""The top-level README's tables of the current config's runs (`seed*_current_config/`), from their committed
`summary.json` and `evaluation.json`, with the pooled rows of `retrieval_bootstrap.json` and `ratio_bootstrap.json`
(run those two scripts first when a run is added).

    python experiments/results/medical/tables.py      # prints Markdown; paste it into README.md
"""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = sorted(HERE.glob("seed*_current_config"), key=lambda p: int(p.name[4:].split("_")[0]))
STAGES = ("tokenizers and sequences", "findings judge", "pretrain", "finetune", "evaluation")


def row(*cells) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def interval(result: dict) -> str:
    """A bootstrap result's 95% interval as text: signed for a difference, plain for a ratio."""
    low, high = result["ci95"]
    return f"{low:+.3f} to {high:+.3f}" if "difference" in result else f"{low:.3f}-{high:.3f}"


def per_finding(scores: dict) -> dict:
    """{finding: F1} of a clinical-efficacy or judge block."""
    return {name: value["f1"] for name, value in scores["per_finding"].items()}


runs = {}
for folder in RUNS:
    summary = json.loads((folder / "summary.json").read_text())
    runs[summary["config"]["seed"]] = summary, json.loads((folder / "evaluation.json").read_text())
if not runs:
    raise SystemExit(f"no seed*_current_config folder under {HERE}")
pooled_reading = json.loads((HERE / "retrieval_bootstrap.json").read_text())["pooled_current_config"]
pooled_ratio = json.loads((HERE / "ratio_bootstrap.json").read_text())["pooled_current_config"]
for pooled, script in ((pooled_reading, "retrieval_bootstrap.py"), (pooled_ratio, "ratio_bootstrap.py")):
    if sorted(pooled["folders"]) != sorted(p.name for p in RUNS):
        raise SystemExit(f"{script} pooled {pooled['folders']}, not {[p.name for p in RUNS]}: run it again")
seeds = " and ".join(map(str, runs))

print(row("seed", *STAGES, "total", "VQ held-out PSNR", "judge macro-F1 on its held-out renders", "validation loss"))
print(row(*["---"] * 10))
for seed, (summary, _) in runs.items():
    stages = summary["stage_seconds"]
    hours, minutes = divmod(round(sum(stages.values()) / 60), 60)
    print(row(seed, *(f"{stages[s]:.0f} s" for s in STAGES), f"{hours} h {minutes:02d}",
              f"{summary['image_tokenizer']['psnr_held_out']:.1f} dB", f"{summary['judge']['held_out_macro_f1']:.3f}",
              f"{summary['finetune']['val_loss']:.3f}"))

print()
print(row("image -> report, seed", "CE macro-F1", "retrieval (judge features)", "difference, 95% interval",
          "resamples with the model ahead", "stated findings", "CE micro-F1 (retrieval)", "BLEU-1", "BLEU-4", "ROUGE-L",
          "first try", "report after image"))
print(row(*["---"] * 12))
for seed, (_, evaluation) in runs.items():
    reading = evaluation["image_to_report"]
    model, retrieval, versus = reading["model"], reading["retrieval"], reading["model_vs_retrieval"]
    print(row(seed, f"{model['clinical_efficacy']['macro_f1']:.3f}", f"{retrieval['clinical_efficacy']['macro_f1']:.3f}",
              f"{versus['difference']:+.3f} ({interval(versus)})", f"{versus['fraction_a_ahead']:.0%}",
              f"{reading['model_findings']['macro_f1']:.3f}",
              f"{model['clinical_efficacy']['micro_f1']:.3f} ({retrieval['clinical_efficacy']['micro_f1']:.3f})",
              f"{model['bleu_1']:.3f}", f"{model['bleu_4']:.3f}", f"{model['rouge_l']:.3f}",
              f"{reading['model_one_candidate']['clinical_efficacy']['macro_f1']:.3f}",
              f"{reading['model_report_from_image']['clinical_efficacy']['macro_f1']:.3f}"))
print(row(f"**pooled, seeds {seeds}**", "", "", f"**{pooled_reading['difference']:+.3f}** ({interval(pooled_reading)})",
          f"{pooled_reading['fraction_a_ahead']:.0%}", *[""] * 7))
baselines = {f"retrieval (VQ latents), seed {' / '.join(map(str, runs))}": "retrieval_vq_features",
             f"most common report, seed {' / '.join(map(str, runs))}": "most_common"}
for label, key in baselines.items():
    scores = [evaluation["image_to_report"][key] for _, evaluation in runs.values()]
    print(row(label, " / ".join(f"{s['clinical_efficacy']['macro_f1']:.3f}" for s in scores), "", "", "", "",
              " / ".join(f"{s['clinical_efficacy']['micro_f1']:.3f}" for s in scores),
              " / ".join(f"{s['bleu_1']:.3f}" for s in scores), " / ".join(f"{s['bleu_4']:.3f}" for s in scores),
              " / ".join(f"{s['rouge_l']:.3f}" for s in scores), "", ""))
r2gen = next(iter(runs.values()))[0]["goals"]["r2gen_iu_xray_reference"]
print(row("R2Gen on real IU X-ray images", *[""] * 6, *(f"{r2gen[key]:.3f}" for key in ("bleu_1", "bleu_4", "rouge_l")),
          "", ""))

print()
print(row("report -> image, seed", "judge macro-F1", "judge macro-F1 on the reference renders", "ratio, 95% interval",
          "resamples >= 0.7",
          "first draw", "judge micro-F1", "FID", "mean image's FID", "SSIM"))
print(row(*["---"] * 10))
for seed, (_, evaluation) in runs.items():
    drawing = evaluation["report_to_image"]
    model, ratio = drawing["model"], drawing["judge_f1_ratio_bootstrap"]
    print(row(seed, f"{model['judge']['macro_f1']:.3f}", f"{drawing['reference']['judge']['macro_f1']:.3f}",
              f"{ratio['ratio']:.3f} ({interval(ratio)})", f"{ratio['fraction_at_goal']:.0%}",
              f"{drawing['model_first_draw']['judge']['macro_f1']:.3f}", f"{model['judge']['micro_f1']:.3f}",
              f"{model['fid']:.1f}", f"{drawing['mean_image']['fid']:.1f}", f"{model['ssim']:.3f}"))
print(row(f"**pooled, seeds {seeds}**", "", "", f"**{pooled_ratio['ratio']:.3f}** ({interval(pooled_ratio)})",
          f"{pooled_ratio['fraction_at_goal']:.0%}", *[""] * 5))

print()
print(row("F1 per finding, seed " + " / ".join(map(str, runs)), "reports (CE)", "retrieval's reports (judge features)",
          "drawn images (judge)", "reference renders (judge)"))
print(row(*["---"] * 5))
blocks = [(e["image_to_report"]["model"]["clinical_efficacy"], e["image_to_report"]["retrieval"]["clinical_efficacy"],
           e["report_to_image"]["model"]["judge"], e["report_to_image"]["reference"]["judge"]) for _, e in runs.values()]
for name in per_finding(blocks[0][0]):
    cells = [" / ".join(f"{per_finding(run[i]).get(name, float('nan')):.2f}" for run in blocks) for i in range(4)]
    print(row(name.replace("nodule_mass", "nodule/mass").replace("_", " "), *cells))
