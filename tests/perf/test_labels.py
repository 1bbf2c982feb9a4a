"""Measurement labels map to profiles and specs by aliases; variable-length rows use stated mean lengths."""

from __future__ import annotations

from pathlib import Path

import pytest

from retarget.perf.labels import match_hardware, model_key
from retarget.perf.validate import run

HEADER = ("source_url,model,params,quant_format,hardware,num_devices,engine,phase,batch_size,input_len,output_len,"
          "metric,value,notes,mean_input_len,mean_output_len")


@pytest.mark.parametrize("label, profile", [
    ("RTX 5090", "rtx-5090"), ("NVIDIA GeForce RTX 5090 32GB", "rtx-5090"), ("NVIDIA A100 PCIe 80GB", "a100-80g-pcie"),
    ("A100 SXM4 40GB", "a100-40g-sxm"), ("Apple M3 Max (40-core GPU, 64GB)", "m3-max"), ("AWS Trainium2", "trainium2"),
    ("Intel Gaudi 2 96GB", "gaudi2"), ("B200", "b200"), ("NVIDIA GB200 NVL72", "gb200"),
])
def test_hardware_aliases(label, profile):
    assert match_hardware(label) == profile


def test_ambiguous_or_unknown_hardware_is_not_guessed():
    assert match_hardware("NVIDIA A100 80GB") == ["a100-80g-pcie", "a100-80g-sxm"]
    assert match_hardware("NVIDIA GH200 144GB") is None  # more memory than the 96 GB GH200 profile
    assert match_hardware("Apple M4 Pro") is None  # a variant the m4-max profile is not
    assert model_key("Qwen/Qwen2.5-7B-Instruct") == model_key("Qwen2.5-7B") == "qwen2.5-7b"


def _run(tmp_path: Path, rows: list[str]) -> list[dict]:
    path = tmp_path / "m.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return run(path)["rows"]


def test_aliases_and_mean_lengths_predict_like_the_canonical_row(tmp_path):
    url = "https://example.org"
    out = _run(tmp_path, [
        f"{url},Qwen2.5-7B,7B,BF16,RTX 5090,1,vLLM,decode,8,512,256,tokens/s,400,,,",
        f"{url},qwen2.5-7b,7B,BF16,GeForce RTX 5090 32GB,1,vLLM,decode,8,512,256,tokens/s,400,,,",
        f"{url},Qwen2.5-7B,7B,BF16,RTX 5090,1,vLLM,decode,8,ShareGPT,ShareGPT,tokens/s,400,,512,256",
        f"{url},Qwen2.5-7B,7B,BF16,RTX 5090,1,vLLM,decode,8,ShareGPT,ShareGPT,tokens/s,400,,,",
        f"{url},Qwen2.5-7B,7B,BF16,NVIDIA A100 80GB,1,vLLM,decode,8,512,256,tokens/s,400,,,",
        f"{url},Qwen2.5-7B,7B,BF16,RTX 5090,1,vLLM,decode,large,512,256,tokens/s,400,,,",
    ])
    assert out[0]["profile"] == "rtx-5090" and out[0]["predicted"] > 0
    assert out[1]["predicted"] == out[0]["predicted"] == out[2]["predicted"]
    assert "mean_input_len" in out[3]["skipped"]
    assert "a100-80g-pcie or a100-80g-sxm" in out[4]["skipped"]
    assert "state the batch" in out[5]["skipped"]
