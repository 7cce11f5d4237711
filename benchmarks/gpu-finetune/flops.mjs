// FLOPs and memory of one fine-tuning step, for the MFU column of benchmarks/gpu-finetune (see README.md).
//
// `full` is measured in model FLOPs, 6 N T (N: the matmul parameters, LM head included and counted once when
// tied; T: tokens; attention left out, the PaLM convention). Every method is also given its actual FLOPs, what
// the trainer computes:
//   forward          2 T N + 4 qd P per layer (P: causal query-key pairs of the batch; QKᵀ and PV)
//   input gradients  2 T V H (LM head) + per layer from the lowest trainable one up: 2 T N_layer + 8 qd P
//                    (the lowest layer is counted whole: an upper bound when only its FFN trains)
//   weight gradients 2 T x the trained values of every matrix (rows / columns: only the selected ones; the
//                    embedding's is a scatter: 0, unless tied to the LM head)
//   LoRA             + 4 T (|A| + |B|) per adapter (its forward and its input gradient; |B|: the rows it holds)
// AdamW, norms and the loss are element-wise (not counted).

/** Matmul parameters of a config.json (LM head included once). */
export function matmulParams(cfg) {
  const d = dimsOf(cfg);
  return d.L * d.layerMatmul + d.V * d.H;
}

export function dimsOf(cfg) {
  const H = cfg.hidden_size, I = cfg.intermediate_size, L = cfg.num_hidden_layers, V = cfg.vocab_size;
  const nh = cfg.num_attention_heads, nkv = cfg.num_key_value_heads ?? nh;
  const hd = cfg.head_dim ?? H / nh;
  const qd = nh * hd, kvd = nkv * hd;
  return { H, I, L, V, qd, kvd, tied: cfg.tie_word_embeddings === true, layerMatmul: H * qd + 2 * H * kvd + qd * H + 3 * H * I };
}

/** Causal query-key pairs of a batch of sequences. */
export function causalPairs(seqLens) {
  return seqLens.reduce((s, n) => s + (n * (n + 1)) / 2, 0);
}

/**
 * FLOPs of one optimizer step (one micro-batch) of a method. params: the trainer's params() with size > 0
 * ({ role, layer, mode, rows, cols, size }). Returns { model, actual } (model: 6 N T, the same for every method).
 */
export function stepFlops(cfg, params, seqLens) {
  const d = dimsOf(cfg);
  const T = seqLens.reduce((a, b) => a + b, 0);
  const P = causalPairs(seqLens);
  const N = matmulParams(cfg);
  const forward = 2 * T * N + d.L * 4 * d.qd * P;
  const trainedLayers = params.filter((p) => p.layer >= 0).map((p) => p.layer);
  const belowAll = params.some((p) => p.layer < 0 && p.role === 'embed');
  const lowest = belowAll ? 0 : trainedLayers.length ? Math.min(...trainedLayers) : d.L;
  const layersBack = d.L - lowest;
  const inputGrads = 2 * T * d.V * d.H + layersBack * (2 * T * d.layerMatmul + 8 * d.qd * P);
  let weightGrads = 0, lora = 0;
  for (const p of params) {
    const matrix = p.rows > 1 && p.cols > 1;
    if (p.mode === 'lora_a' || p.mode === 'lora_b') {
      weightGrads += 2 * T * p.size;
      lora += 4 * T * p.size;
    } else if (matrix && !(p.role === 'embed' && !d.tied)) {
      weightGrads += 2 * T * p.size;
    }
  }
  return { model: 6 * N * T, actual: forward + inputGrads + weightGrads + lora, forward, inputGrads, weightGrads, lora };
}

/**
 * Device bytes a method needs about (to skip what cannot fit before loading it): the weights in bf16 (f32 mode:
 * float32), 16 bytes per trained value (float32 master, gradient, Adam m and v), the activations the backward
 * keeps per token and layer (the norms' inputs and outputs, q / k / v, the attention output, gate / up / act: at
 * most 4 H + 2 qd + 2 kvd + 3 I values, counted as float32) and 1 GiB of scratch.
 */
export function estimateDeviceBytes(cfg, trainedValues, tokens, compute = 'bf16') {
  const d = dimsOf(cfg);
  const weightBytes = (compute === 'f32' ? 4 : 2) * (d.L * d.layerMatmul + d.V * d.H * (d.tied ? 1 : 2));
  return weightBytes + 16 * trainedValues + 4 * (4 * d.H + 2 * d.qd + 2 * d.kvd + 3 * d.I) * tokens * d.L + 2 ** 30;
}

/**
 * Trained values of a method, for the fit check before a measurement starts (each costs 16 bytes of float32
 * master, gradient and Adam m and v): every parameter (full: the matmuls, the LM head once more when untied),
 * every gate / up / down weight (mlp: 5.6 B on Llama-3.1-8B, 90 GB of optimizer state), 3 H per masked neuron
 * (neurons, random: its gate and up rows and its down column), LoRA r 32 on gate, up and down of every layer
 * (lora; an upper bound of neuron-lora's r 8 adapters on q / k / v / o and the masked gate_proj one).
 */
export function trainedValuesEstimate(cfg, method, neurons) {
  const d = dimsOf(cfg);
  switch (method) {
    case 'full': return matmulParams(cfg) + (d.tied ? 0 : d.V * d.H);
    case 'mlp': return d.L * 3 * d.H * d.I;
    case 'neurons':
    case 'random': return 3 * d.H * neurons;
    case 'lora':
    case 'neuron-lora': return d.L * 32 * 3 * (d.H + d.I);
    default: throw new Error(`unknown method '${method}'`);
  }
}

/**
 * Why `method` cannot run on a device of `totalBytes` (null when it fits, or when the size is unknown): its
 * estimateDeviceBytes above 95% of the device. Asked before every measurement, so that a method that cannot fit
 * (mlp on Llama-3.1-8B on an 80 GB H100) is listed as skipped with its reason instead of failing the run with
 * the trainer's out-of-memory error.
 */
export function deviceFitSkip(cfg, method, neurons, tokens, compute, totalBytes) {
  if (!totalBytes) return null;
  const need = estimateDeviceBytes(cfg, trainedValuesEstimate(cfg, method, neurons), tokens, compute);
  if (need <= 0.95 * totalBytes) return null;
  return `needs about ${(need / 2 ** 30).toFixed(0)} GiB (${compute === 'f32' ? 'float32' : 'bf16'} weights + float32 master, gradient, ` +
    `Adam m and v of ${method === 'full' ? 'every parameter' : 'the trained values'} + activations), the device has ${(totalBytes / 2 ** 30).toFixed(0)} GiB`;
}
