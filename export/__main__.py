"""python -m export {convert, verify, demo, random-checkpoint, quantize}: see README.md, "Exporting models"."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def _quiet():
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    logging.getLogger("torch").setLevel(logging.ERROR)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("onnxscript").setLevel(logging.ERROR)
    import warnings
    warnings.filterwarnings("ignore")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export", description="GPT-SoVITS checkpoints -> gsv ONNX bundle")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="export a GPT .ckpt + SoVITS .pth (+ HuBERT, BERT folders) into a bundle; "
                       "--g2pw DIR adds g2pW's polyphone model (alone: to the existing bundle --out)")
    c.add_argument("--gpt", help="GPT weights (.ckpt), e.g. GPT_weights_v2/name-e15.ckpt")
    c.add_argument("--sovits", help="SoVITS weights (.pth), e.g. SoVITS_weights_v2/name_e8_s96.pth")
    c.add_argument("--hubert", help="chinese-hubert-base folder (Hugging Face layout)")
    c.add_argument("--bert", help="chinese-roberta-wwm-ext-large folder (Hugging Face layout)")
    c.add_argument("--out", required=True, help="bundle folder to write, e.g. onnx/myvoice")
    c.add_argument("--sv", help="v2Pro/v2ProPlus only: the speaker-verification model, "
                   "GPT_SoVITS/pretrained_models/sv/pretrained_eres2netv2w24s4ep4.ckpt (ignored with a note for v1/v2)")
    c.add_argument("--fp16", action="store_true", help="store weights as float16 (I/O stays float32)")
    c.add_argument("--g2pw", metavar="DIR", help="upstream's GPT_SoVITS/text/G2PWModel folder (g2pW.onnx + its "
                   "tables): Chinese polyphonic characters are then read by the model, as upstream does")
    v = sub.add_parser("verify", help="compare a bundle with a golden folder, stage by stage")
    v.add_argument("--bundle", required=True)
    v.add_argument("--golden", required=True)
    d = sub.add_parser("demo", help="write the small demo bundle (random weights, reduced dimensions)")
    d.add_argument("--out", default="onnx/demo")
    d.add_argument("--seed", type=int, default=20261125)
    r = sub.add_parser("random-checkpoint", help="write random GPT/SoVITS/HuBERT/BERT checkpoints in the real formats")
    r.add_argument("--out", required=True)
    r.add_argument("--full-size", action="store_true", help="the real production dimensions (default: tiny)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--version", choices=["v2", "v2pro", "v2proplus"], default="v2",
                   help="SoVITS version to write (v2pro/v2proplus also write a random speaker-verification model)")
    c.add_argument("--no-variants", action="store_true", help="skip the gated precision variants (GPT int8/int4, "
                   "BERT int8, vocoder int8) that convert otherwise builds and registers when they pass")
    c.add_argument("--golden", help="also gate the variants on this golden set's request (its own model only)")
    c.add_argument("--ref", help="reference wav whose speaker vector conditions the int8 vocoder's calibration "
                   "(default: the demo reference)")
    q = sub.add_parser("quantize", help="add gated precision variants to a bundle (default: the int8 GPT)")
    q.add_argument("--bundle", required=True)
    q.add_argument("--golden", help="also gate on this golden set (the bundle must be its model)")
    q.add_argument("--variant", default="int8", choices=["int8", "int4"], help="GPT variant (MatMulNBits 8 or 4-bit)")
    q.add_argument("--all", action="store_true", help="GPT int8 and int4, BERT and vocoder, each gated")
    q.add_argument("--tokens", type=int, default=600, help="teacher-forced GPT steps on the bundle (default 600)")
    q.add_argument("--force", action="store_true", help="register the variant even if the gate fails")
    q.add_argument("--threshold", action="append", default=[], metavar="KEY=VALUE",
                   help="override a GPT gate threshold (export/gate.py THRESHOLDS), e.g. mean_tv=0.01")
    q.add_argument("--bits", type=int, choices=[4, 8], help="GPT: override the variant's bits")
    q.add_argument("--block-size", type=int, help="GPT: override the variant's block size (power of two >= 16)")
    q.add_argument("--accuracy-level", type=int, choices=[0, 1, 2, 3, 4], help="GPT: MatMulNBits accuracy_level "
                   "(4: int8 compute)")
    q.add_argument("--damage", type=float, default=0.0, help=argparse.SUPPRESS)  # tests: a broken quantisation
    q.add_argument("--bert", action="store_true", help="quantize BERT instead of the GPT (gate: features within "
                   "5%% relative L2 of fp32)")
    q.add_argument("--vocoder", action="store_true", help="quantize the SoVITS decoder instead of the GPT (gate: "
                   "audio SNR >= 30 dB against fp32)")
    q.add_argument("--ref", help="with --vocoder: reference wav whose speaker vector conditions the calibration")
    args = ap.parse_args(argv)
    _quiet()

    from .ckpt import CheckpointError

    try:
        if args.cmd == "convert":
            sources = [args.gpt, args.sovits, args.hubert, args.bert]
            if args.g2pw and not any(sources):
                from .g2pw import add_to_bundle
                add_to_bundle(args.g2pw, args.out)
                return 0
            if not all(sources):
                ap.error("convert needs --gpt, --sovits, --hubert and --bert (or only --g2pw DIR with an existing "
                         "bundle as --out)")
            from .convert import convert
            convert(args.gpt, args.sovits, args.hubert, args.bert, args.out, fp16=args.fp16, g2pw=args.g2pw,
                    sv=args.sv, variants=not args.no_variants, golden=args.golden, ref=args.ref)
            return 0
        if args.cmd == "verify":
            from .verify import main as vmain
            return vmain(args)
        if args.cmd == "demo":
            from .demo import make_demo
            make_demo(args.out, seed=args.seed)
            return 0
        if args.cmd == "quantize":
            from .quantize import quantize, quantize_all, quantize_bert, quantize_vocoder
            if args.all:
                res = quantize_all(args.bundle, golden=args.golden, ref=args.ref, tokens=args.tokens)
                print("variants: " + ", ".join(f"{k} {('registered', 'refused', 'FAILED')[v]}" for k, v in res.items()))
                return 0
            if args.vocoder:
                return quantize_vocoder(args.bundle, ref=args.ref, force=args.force)
            if args.bert:
                return quantize_bert(args.bundle, golden=args.golden, force=args.force)
            th = {}
            for kv in args.threshold:
                k, _, v = kv.partition("=")
                from .gate import THRESHOLDS
                if k not in THRESHOLDS or not v:
                    ap.error(f"--threshold {kv!r}: expected KEY=VALUE with KEY one of {sorted(THRESHOLDS)}")
                th[k] = float(v)
            settings = {k: v for k, v in (("bits", args.bits), ("block_size", args.block_size),
                                          ("accuracy_level", args.accuracy_level)) if v is not None}
            return quantize(args.bundle, golden=args.golden, tokens=args.tokens, force=args.force,
                            variant=args.variant, thresholds=th, damage=args.damage, settings=settings)
        if args.cmd == "random-checkpoint":
            from .random_ckpt import write_random_checkpoints
            write_random_checkpoints(args.out, full_size=args.full_size, seed=args.seed, version=args.version)
            return 0
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
