"""`tts-desktop doctor`: what this machine offers (GPU, CUDA, NVRTC, cuBLAS, audio) and a kernel build."""

from __future__ import annotations

from tts_desktop.cli.errors import EXIT_FAILED


def add_parser(sub):
    p = sub.add_parser("doctor", help="report GPU, CUDA and audio, and compile every kernel",
                       description="Report the GPU, driver, CUDA / NVRTC / cuBLAS versions and audio devices, "
                                   "and compile every CUDA kernel through NVRTC for --arch (default: the "
                                   "present GPU's). Works without a GPU.")
    p.add_argument("--arch", metavar="sm_XX", help="compile for this architecture, e.g. sm_80 or sm_90")
    return p


def run(args) -> int:
    from tts_desktop.engine.doctor import doctor_report, format_report

    report = doctor_report(args.arch)
    print(format_report(report))
    return 0 if report.get("ok") else EXIT_FAILED
