"""`tts-desktop bench`: latency statistics in the format of NVIDIA's reference tables."""

from __future__ import annotations


def add_parser(sub):
    from tts_desktop.cli.common import add_tf32_option

    p = sub.add_parser("bench", help="benchmark the pipeline (NVIDIA's statistics block)",
                       description="Time text-to-audio runs and print avg latency, std, latency intervals, "
                                   "mels generated, audio seconds and RTF, with per-stage times.")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    add_tf32_option(p)
    p.add_argument("--batch", type=int, default=1, metavar="N")
    p.add_argument("--frames", type=int, metavar="N", help="force the decoder length (gate disabled)")
    p.add_argument("--runs", type=int, default=10, metavar="N")
    p.add_argument("--warmup", type=int, default=3, metavar="N")
    p.add_argument("--voice", metavar="V", help="voice (default: random weights at NVIDIA's full dimensions)")
    p.add_argument("--text", metavar="TEXT",
                   help="input text, read as one input, its sentences punctuated as the app punctuates them "
                        "(default: NVIDIA's 128-character benchmark phrase)")
    p.add_argument("--compare-pytorch", metavar="PATH",
                   help="DeepLearningExamples checkout: run NVIDIA's PyTorch implementation side by side")
    p.add_argument("--save", metavar="DIR", default="benchmarks/results", help="where to save the JSON result")
    return p


def run(args) -> int:
    from tts_desktop.bench import run_bench
    from tts_desktop.cli.common import check_engine_options

    check_engine_options(args)
    return run_bench(args)
