import { Option, type Command } from 'commander';

import { loadAddon } from '../../native/addon.js';
import { openCheckpoint, estimateMemory, estimateDeviceMemory } from '../../model/checkpoint.js';
import { openModel } from '../common.js';
import { formatBytes, parseIntOption, printResult } from '../output.js';

export function registerInfo(program: Command): void {
  program
    .command('info <model-dir>')
    .description('architecture, parameter count, dtypes and the memory a run needs (reads headers only)')
    .option('--batch-tokens <n>', 'tokens per forward batch, for the activation estimate', parseIntOption('--batch-tokens', 1), 512)
    .option('--context <n>', 'tokens of KV cache, for the cache estimate (default: the model\'s context)', parseIntOption('--context', 1))
    .option('--device <device>', 'also load the model on this device (cuda, cuda:N, auto) and report what it holds after one forward')
    .addOption(new Option('--compute <mode>', 'compute mode for --device (GPU default bf16)').choices(['f32', 'bf16']))
    .option('--json', 'print one JSON document on stdout')
    .action(async (dir: string, o: { batchTokens: number; context?: number; device?: string; compute?: 'f32' | 'bf16'; json?: boolean }) => {
      const ck = await openCheckpoint(dir);
      const c = ck.config;
      const context = o.context ?? c.maxPositions;
      const kernel = loadAddon().kernelInfo();
      const mem = estimateMemory(c, { weightBytes: ck.totalBytes, batchTokens: o.batchTokens, contextTokens: context, threads: kernel.hardwareThreads });
      const device = o.device && o.device !== 'cpu' ? await deviceReport(dir, o, context, ck.totalBytes) : undefined;
      const json = {
        dir: ck.dir, modelType: c.modelType, config: c, parameters: ck.parameterCount, files: ck.files,
        dtypes: ck.dtypeCounts, memory: { ...mem, batchTokens: o.batchTokens, contextTokens: context },
        engine: kernel, ...(device ? { device } : {}), notes: ck.notes, warnings: ck.warnings,
      };
      printResult(o, json, () => [
        `model        ${ck.dir}`,
        `architecture ${c.modelType}: ${c.numLayers} layers, hidden ${c.hiddenSize}, FFN ${c.intermediateSize} neurons/layer ` +
          `(${c.numLayers * c.intermediateSize} in all), ${c.numHeads} heads / ${c.numKvHeads} KV heads of ${c.headDim}, vocab ${c.vocabSize}`,
        `positions    context ${c.maxPositions}, rope θ ${c.ropeTheta}${c.ropeScaling ? `, ${c.ropeScaling.type} scaling ×${c.ropeScaling.factor}` : ''}`,
        `features     ${[c.tieWordEmbeddings ? 'tied embeddings' : 'separate LM head', c.qkvBias ? 'q/k/v bias' : null,
          c.hiddenAct !== 'silu' ? `${c.hiddenAct} FFN` : null, c.norm === 'rms1p' ? '(1+w) RMSNorm' : c.norm === 'layer' ? 'LayerNorm' : null,
          c.qkNorm ? 'q/k norms' : null, c.parallelBlock ? 'parallel block' : null, c.postNorms ? 'post-norms' : null,
          c.ropeInterleaved ? 'interleaved RoPE' : null, c.embedScale !== 1 ? `embeddings ×${c.embedScale.toFixed(3)}` : null,
          c.attnSoftcap ? `attention softcap ${c.attnSoftcap}` : null, c.finalSoftcap ? `logit softcap ${c.finalSoftcap}` : null,
          c.logitScale !== 1 ? `logit scale ${c.logitScale}` : null,
          c.slidingWindow !== null ? `sliding window ${c.slidingWindow}${c.slidingPeriod === 2 ? ' (even layers)' : ''}` : null,
        ].filter(Boolean).join(', ')}`,
        `parameters   ${ck.parameterCount.toLocaleString('en-US')}`,
        `dtypes       ${Object.entries(ck.dtypeCounts).map(([d, n]) => `${d}×${n}`).join(', ')} in ${ck.files.length} file(s)`,
        `memory       weights ${formatBytes(mem.weightBytes)} (memory-mapped, not copied); KV cache ${formatBytes(mem.kvCacheBytesPerToken)}/token ` +
          `= ${formatBytes(mem.kvCacheBytes)} for ${context} tokens; activations ${formatBytes(mem.activationBytes)} for ${o.batchTokens}-token batches; ` +
          `total ≈ ${formatBytes(mem.totalBytes)}`,
        `engine       ${kernel.kernel} kernels, ${kernel.hardwareThreads} hardware threads`,
        ...(device ? [
          `device       ${device.runtime}`,
          `  stated     weights ${formatBytes(device.estimate.weightBytes)}, KV cache ${formatBytes(device.estimate.kvCacheBytes)} for ${context} tokens, ` +
            `activations ${formatBytes(device.estimate.activationBytes)} for ${o.batchTokens}-token batches, total ${formatBytes(device.estimate.totalBytes)}`,
          `  measured   weights ${formatBytes(device.measured.weights)}, KV cache ${formatBytes(device.measured.kvCache)}, activations ${formatBytes(device.measured.activations)}, ` +
            `scratch ${formatBytes(device.measured.scratch)}; device ${formatBytes(device.measured.deviceUsed)} used of ${formatBytes(device.measured.deviceTotal)}`,
        ] : []),
        ...ck.notes.map((n) => `note         ${n}`),
        ...ck.warnings.map((w) => `warning      ${w}`),
      ].join('\n'));
    });
}

/** Loads the model on the device, runs one forward of `batchTokens` tokens into a KV cache of `context` tokens,
 *  and reports the runtime's memory next to the estimate (the GPU runtime's buffers are sized by that forward). */
async function deviceReport(dir: string, o: { batchTokens: number; device?: string; compute?: 'f32' | 'bf16' }, context: number,
  weightBytesStored: number) {
  const model = await openModel(dir, { ...(o.device ? { device: o.device } : {}), ...(o.compute ? { compute: o.compute } : {}) });
  try {
    const c = model.config;
    const n = Math.min(o.batchTokens, context);
    const cache = model.createCache(1, context);
    await model.forward([Array.from({ length: n }, (_, i) => (i * 7919 + 1) % c.vocabSize)], { logits: 'none', cache, cacheSlots: [0] });
    const info = model.info();
    // `auto` may have fallen back to the CPU engine: its figures are then set against the CPU engine's estimate
    // (weights memory-mapped as stored, float32 cache), not the GPU runtime's.
    const estimate = model.device === 'cpu'
      ? estimateMemory(c, { weightBytes: weightBytesStored, batchTokens: o.batchTokens, contextTokens: context, threads: loadAddon().kernelInfo().hardwareThreads })
      : estimateDeviceMemory(c, { compute: model.compute, batchTokens: o.batchTokens, contextTokens: context });
    return { runtime: info.describe, device: model.device, compute: model.compute, estimate, measured: info.memory };
  } finally {
    await model.dispose();
  }
}
