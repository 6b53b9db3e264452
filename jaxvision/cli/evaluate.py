"""``jaxvision evaluate``: a run's loss, accuracy and per-class table on a split, with its pictures."""

from __future__ import annotations

import argparse
import os
import sys
import time

from jaxvision import jsonio
from jaxvision.cli import arguments


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from jaxvision.evaluation import DEFAULT_MISCLASSIFIED

    parser = subparsers.add_parser(
        "evaluate",
        help="a run's loss, accuracy, top-5 accuracy and per-class table on its test split",
        description="Evaluate a finished run on a split of its dataset, read as its training read it (splits, "
                    "seed, image size and normalisation from its run.json), and write evaluation.json, "
                    "per_class.json/.txt, confusion_matrix.png and misclassified.png.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run: the --output-dir of `jaxvision train`")
    parser.add_argument("--dataset", default=None,
                        help="another dataset of the run's classes: a TFDS name or an image folder (default: the run's)")
    parser.add_argument("--split", default="test", help="train, validation or test (default: test)")
    parser.add_argument("--tta", type=arguments.spec, default=None, metavar="VIEWS",
                        help="average the probabilities over test-time views: 2, 10, 30, 150 or e.g. flip,crops:5")
    parser.add_argument("--batch-size", type=arguments.positive_int, default=256, help="images per forward pass")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR)")
    parser.add_argument("--misclassified", type=int, default=DEFAULT_MISCLASSIFIED, metavar="K",
                        help=f"the K most confidently wrong images in misclassified.png (default: {DEFAULT_MISCLASSIFIED})")
    parser.add_argument("--output-dir", default=None, help="where the files go (default: RUN_DIR/evaluation)")
    parser.add_argument("--json", action="store_true", help="print only evaluation.json's contents")
    parser.add_argument("--task", choices=("classify", "binary", "regress", "segment", "detect"), default=None,
                        help="the run's task (default: read from its run.json; a different one is refused)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvision.augment import count_views
    from jaxvision.evaluation import check_split, evaluate_run, save_evaluation
    from jaxvision.run_record import load_run, read_run_file

    from jaxvision.cli.task_outputs import check_task_option, evaluate_task_run

    # Everything that can be checked without the model or the data, before either is loaded.
    metadata = read_run_file(args.run_dir)
    check_split(args.split)
    task = check_task_option(args.task, metadata, args.run_dir)
    if args.tta:
        count_views(args.tta)
    if args.misclassified < 0:
        raise ValueError(f"Invalid --misclassified {args.misclassified}: expected an integer >= 0, e.g. --misclassified 16.")
    output_dir = args.output_dir or os.path.join(args.run_dir, "evaluation")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"Invalid --output-dir {output_dir}: it is a file; expected a folder (made if missing). "
                         "Pass another --output-dir.")
    if task != "classify":
        if args.tta:
            raise ValueError(f"Invalid --tta {args.tta} for a --task {task} run: it applies to classification runs; drop it")
        return evaluate_task_run(args, load_run(args.run_dir), output_dir)
    start = time.perf_counter()
    evaluation = evaluate_run(load_run(args.run_dir), dataset=args.dataset, split=args.split, tta=args.tta,
                              batch_size=args.batch_size, data_dir=args.data_dir, misclassified=args.misclassified)
    written = save_evaluation(evaluation, output_dir)
    seconds = time.perf_counter() - start
    if args.json:
        print(jsonio.dumps(evaluation.to_json(), indent=2))
    else:
        about = evaluation.about
        views = f" with test-time views {about['tta']}" if about["tta"] else ""
        skipped = f" ({about['skipped_images']} undecodable images skipped)" if about["skipped_images"] else ""
        print(f"{about['dataset']} {about['split']}{views}{skipped}: {evaluation.headline()}")
        print(evaluation.table())
    print(f"evaluated in {seconds:.1f} s; wrote {', '.join(os.path.basename(p) for p in written)} to {output_dir}",
          file=sys.stderr)
    return 0
