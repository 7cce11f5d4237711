"""What the PyTorch baselines of benchmarks/gpu and benchmarks/gpu-finetune share: PyTorch imported with a one-line
error, and the transformers config of a shape (LlamaConfig, or another family's), built the same way on
transformers 4.4x and 5.x."""
import sys


def require_torch(script: str):
    """The torch module, or one line on stderr and exit 1 (not a traceback): the baselines need PyTorch."""
    try:
        import torch
    except ImportError as e:
        print(f"{script}: PyTorch is not importable ({e}); run it with a python3 that has torch and transformers",
              file=sys.stderr)
        sys.exit(1)
    return torch


def llama_config(shape: dict, **kwargs):
    """LlamaConfig on transformers 4.4x and 5.x alike (model_config of "llama")."""
    return model_config("llama", shape, **kwargs)


def model_config(model_type: str, shape: dict, **kwargs):
    """The config of model_type ("llama", "qwen2", "gemma2", ...: AutoConfig.for_model) on transformers 4.4x and 5.x
    alike, the one place that depends on the version.

    RoPE: 4.x takes rope_theta and rope_scaling; 5.x keeps both in the field rope_parameters (models/llama/
    configuration_llama.py) and reads the old names only through a backward-compatibility path
    (modeling_rope_utils.py, convert_rope_params_to_dict), so on 5.x they go to rope_parameters directly. The
    numbers are made floats: 4.x's rope validation warns of an int factor (a config.json written by JavaScript has 8
    for 8.0). The dtype is not passed: a model constructed from a config is made in torch's default dtype whatever
    the config says (config.torch_dtype, renamed dtype in 4.56, only steers from_pretrained/from_config).
    """
    import transformers
    from transformers import AutoConfig

    shape = dict(shape)
    theta = float(shape.pop("rope_theta", 500000.0))
    rope = {k: float(v) if k in ("factor", "low_freq_factor", "high_freq_factor") else v
            for k, v in (shape.pop("rope_scaling", None) or {}).items()}
    if int(transformers.__version__.split(".")[0]) >= 5:
        kwargs["rope_parameters"] = {"rope_type": "default", **rope, "rope_theta": theta}
    else:
        kwargs.update(rope_theta=theta, rope_scaling=rope or None)
    return AutoConfig.for_model(model_type, **shape, **kwargs)
