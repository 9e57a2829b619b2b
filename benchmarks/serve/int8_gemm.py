"""Does ONNX Runtime's int8 matrix multiply use this CPU's int8 units? (issue 26, BENCHMARKS.md's tagging notes)

    python -m benchmarks.serve.int8_gemm --out benchmarks/serve/results/int8_gemm-bf16cpu.json

One linear layer of MiniLM's feed-forward block (rows x 384 @ 384 x 1,536) at a few row counts, side by side in one
process, 2 threads each: ONNX Runtime's `MatMulInteger` with uint8 activations and int8 weights (what
`quantize_dynamic(weight_type=QInt8)` writes for the export) with its intra-op threads not spinning after a run
(nertune's sessions) and spinning (ONNX Runtime's default), torch bf16 and torch fp32. Median of 5 blocks of
200 calls after a warm-up. Operations a second: 2 x rows x 384 x 1,536. Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from benchmarks.common import git_sha, versions, write_result
from nertune.machine import cpu_description

IN, OUT = 384, 1536
CALLS, BLOCKS = 200, 5


def per_call(call) -> float:
    for _ in range(CALLS // 4):
        call()
    blocks = []
    for _ in range(BLOCKS):
        began = time.perf_counter()
        for _ in range(CALLS):
            call()
        blocks.append((time.perf_counter() - began) / CALLS)
    return statistics.median(blocks)


def ort_int8(rows: int, threads: int, spinning: bool):
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-127, 128, (IN, OUT), dtype=np.int8), "w")
    zero = numpy_helper.from_array(np.array(128, dtype=np.uint8), "zero")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "zero"], ["y"])],
        "int8_linear",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [rows, IN])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [rows, OUT])],
        [weight, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")  # nertune's: "0"
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (rows, IN), dtype=np.uint8)}
    return lambda: session.run(None, feed)


def torch_matmul(rows: int, dtype: torch.dtype):
    x, w = torch.randn(rows, IN, dtype=dtype), torch.randn(IN, OUT, dtype=dtype)
    return lambda: x @ w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows_out = []
    for rows in args.rows:
        ops = 2 * rows * IN * OUT
        seconds = {
            "onnxruntime_int8": per_call(ort_int8(rows, args.threads, spinning=False)),
            "onnxruntime_int8_spinning": per_call(ort_int8(rows, args.threads, spinning=True)),
            "torch_bf16": per_call(torch_matmul(rows, torch.bfloat16)),
            "torch_fp32": per_call(torch_matmul(rows, torch.float32)),
        }
        row = {"rows": rows, **{f"{k}_us": 1e6 * v for k, v in seconds.items()}, **{f"{k}_gops": ops / v / 1e9 for k, v in seconds.items()}}
        rows_out.append(row)
        print(
            f"{rows:5d} rows: " + ", ".join(f"{k} {1e6 * v:8.1f} us ({ops / v / 1e9:6.0f} G/s)" for k, v in seconds.items()),
            flush=True,
        )
    write_result(
        args.out,
        {
            "command": "python -m benchmarks.serve.int8_gemm " + " ".join(sys.argv[1:]),
            "git_sha": git_sha(),
            "cpu": cpu_description(),
            "versions": versions("onnxruntime"),
            "threads": args.threads,
            "shape": f"rows x {IN} @ {IN} x {OUT}",
            "results": rows_out,
        },
    )


if __name__ == "__main__":
    main()
