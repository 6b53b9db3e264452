"""``jaxvision predict`` and ``evaluate`` for runs of ``--task binary|regress|segment|detect``.

predict prints one line per image (the positive probability, the values, the class shares of the mask, or the
boxes) and, for masks and boxes, writes the masks as class-index PNGs and a picture of them over the images;
evaluate reads the run's dataset as training did and writes the task's figures, per-class table and pictures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
from PIL import Image

from jaxvision import jsonio

# Images drawn in predict's and evaluate's pictures.
PICTURE_IMAGES = 8


def check_task_option(task: str | None, metadata: dict[str, Any], run_dir: str) -> str:
    """The run's task; a --task that differs from it is refused."""
    own = (metadata.get("task") or {}).get("name", "classify")
    if task is not None and task != own:
        raise ValueError(f"Invalid --task {task}: the run in {run_dir} was trained for --task {own}; drop --task or pick "
                         "a run of that task")
    return own


def prediction_line(path: str, task, prediction: Any) -> str:
    if task.name == "binary":
        return f"{path}: {prediction['label']} (p({task.class_names[1]}) = {prediction['probability']:.3f})"
    if task.name == "regress":
        return f"{path}: " + ", ".join(f"{name} {value:.4g}" for name, value in prediction.items())
    if task.name == "segment":
        shares = sorted(prediction["fractions"].items(), key=lambda item: -item[1])
        return f"{path}: " + ", ".join(f"{name} {share:.1%}" for name, share in shares if share > 0)
    objects = [f"{task.class_names[c]} {s:.2f} [{', '.join(f'{v:.1f}' for v in b)}]"
               for b, s, c in zip(prediction["boxes"], prediction["scores"], prediction["classes"])]
    return f"{path}: {len(objects)} object(s)" + (": " + "; ".join(objects) if objects else "")


def _jsonable(prediction: Any, task) -> Any:
    if task.name == "segment":
        return {"fractions": prediction["fractions"]}
    if task.name == "detect":
        return {"objects": [{"class": task.class_names[int(c)], "score": float(s), "box": [float(v) for v in b]}
                            for b, s, c in zip(prediction["boxes"], prediction["scores"], prediction["classes"])]}
    return prediction


def picture(task, images: np.ndarray, predictions: list, path: str, *, truths: Any = None, score_threshold: float = 0.3,
            title: str | None = None) -> str | None:
    """Masks over the images (truth | prediction with truths) or boxes with class and score; None for other tasks."""
    from jaxvision import visualize

    pixels = images.astype(np.float32) / 255.0
    if task.name == "segment":
        masks = np.stack([p["mask"] for p in predictions])
        return visualize.draw_segmentations(pixels, masks, path, class_names=list(task.class_names), true_masks=truths,
                                            title=title)
    if task.name == "detect":
        return visualize.draw_detections(pixels, predictions, path, class_names=list(task.class_names),
                                         ground_truths=truths, score_threshold=score_threshold, title=title)
    return None


def predict_task(args: argparse.Namespace, run, paths: list[str]) -> int:
    """``jaxvision predict`` for a task run: a line per image, masks and pictures under --output-dir."""
    from jaxvision.image_files import read_images

    task = run.task
    start = time.perf_counter()
    images = read_images(paths, run)
    outputs = run.logits(images, batch_size=args.batch_size)
    predictions = task.decode(outputs)
    seconds = time.perf_counter() - start
    written = []
    if task.name in ("segment", "detect"):
        output_dir = args.output_dir or os.path.join(run.path, "predictions")
        os.makedirs(output_dir, exist_ok=True)
        if task.name == "segment":
            for path, prediction in zip(paths, predictions):
                name = os.path.splitext(os.path.basename(path))[0] + "_mask.png"
                Image.fromarray(prediction["mask"]).save(os.path.join(output_dir, name))
            written.append(f"{len(paths)} class-index mask PNG(s)")
        count = min(PICTURE_IMAGES, len(paths))
        shown = picture(task, images[:count], predictions[:count], os.path.join(output_dir, "predictions.png"),
                        score_threshold=args.score_threshold, title=f"{run.metadata['model']['name']} ({task.name})")
        written.append(shown)
    if args.json:
        print(jsonio.dumps([{"image": p, **_jsonable(r, task)} for p, r in zip(paths, predictions)], indent=2))
    else:
        for path, prediction in zip(paths, predictions):
            if task.name == "detect":
                keep = prediction["scores"] >= args.score_threshold
                prediction = {k: v[keep] for k, v in prediction.items()}
            print(prediction_line(path, task, prediction))
    print(f"{len(paths)} images in {seconds:.2f} s" + (f"; wrote {', '.join(written)}" if written else ""), file=sys.stderr)
    return 0


def evaluate_task_run(args: argparse.Namespace, run, output_dir: str) -> int:
    """``jaxvision evaluate`` for a task run: its figures on a split of its dataset (or another), as trained."""
    import jax

    from jaxvision.cli.task_train import per_class_table
    from jaxvision.tasks.data import load_task_splits
    from jaxvision.tasks.evaluation import evaluate_task, task_outputs

    task = run.task
    metadata = run.metadata
    settings = metadata.get("settings", {})
    start = time.perf_counter()
    splits, _ = load_task_splits(
        task.name, args.dataset or metadata["dataset"]["name"], batch_size=1, eval_batch_size=args.batch_size,
        validation_fraction=metadata["dataset"].get("validation_fraction", 0.1), seed=settings.get("seed", 0),
        image_size=tuple(metadata["input_shape"][:2]), target=metadata["dataset"].get("target"),
        channels=int(metadata["input_shape"][-1]), data_dir=args.data_dir, make_task=lambda *_: task,
        mean=metadata["normalization"]["mean"], std=metadata["normalization"]["std"])
    apply_fn = run.model.apply
    figures = evaluate_task(task, apply_fn, run.variables, splits, args.split)
    os.makedirs(output_dir, exist_ok=True)
    about = {"run": run.path, "dataset": splits.meta.name, "split": args.split, "task": task.name,
             "examples": len(splits.images[args.split])}
    jsonio.write_json(os.path.join(output_dir, "evaluation.json"), {"about": about, "metrics": figures})
    written = ["evaluation.json"]
    table = per_class_table(task, figures)
    if table:
        with open(os.path.join(output_dir, "per_class.txt"), "w") as f:
            f.write(table + "\n")
        written.append("per_class.txt")
    count = min(PICTURE_IMAGES, len(splits.images[args.split]))
    if task.name in ("segment", "detect"):
        outputs = task_outputs(apply_fn, run.variables, splits.images[args.split][:count], batch_size=count)
        truths = jax.tree.map(lambda t: np.asarray(t)[:count], splits.targets[args.split])
        if task.name == "detect":
            truths = [{"boxes": b[v], "classes": c[v]} for b, c, v in zip(truths["boxes"], truths["classes"], truths["valid"])]
        picture(task, splits.raw[args.split][:count], task.decode(outputs), os.path.join(output_dir, "predictions.png"),
                truths=truths, title=f"{about['dataset']} {args.split}: " + ("truth | prediction" if task.name == "segment"
                                                                            else "predictions (truth dashed)"))
        written.append("predictions.png")
    seconds = time.perf_counter() - start
    if args.json:
        print(jsonio.dumps({"about": about, "metrics": figures}, indent=2))
    else:
        from jaxvision.tasks import HEADLINES

        shown = ", ".join(f"{name} {figures[name]:.4f}" for name in HEADLINES[task.name] if figures.get(name) is not None)
        print(f"{about['dataset']} {args.split} ({about['examples']} images): {shown}")
        if table:
            print(table)
    print(f"evaluated in {seconds:.1f} s; wrote {', '.join(written)} to {output_dir}", file=sys.stderr)
    return 0
