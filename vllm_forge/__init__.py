"""vllm-forge: pinned, reproducible, small vLLM images for RTX 5090 (sm_120, CUDA 12.8)."""
