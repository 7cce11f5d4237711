import type { Command } from 'commander';

import { loadAddon } from '../../native/addon.js';
import { openCheckpoint, estimateMemory } from '../../model/checkpoint.js';
import { formatBytes, parseIntOption, printResult } from '../output.js';

export function registerInfo(program: Command): void {
  program
    .command('info <model-dir>')
    .description('architecture, parameter count, dtypes and the memory a run needs (reads headers only)')
    .option('--batch-tokens <n>', 'tokens per forward batch, for the activation estimate', parseIntOption('--batch-tokens', 1), 512)
    .option('--context <n>', 'tokens of KV cache, for the cache estimate (default: the model\'s context)', parseIntOption('--context', 1))
    .option('--json', 'print one JSON document on stdout')
    .action(async (dir: string, o: { batchTokens: number; context?: number; json?: boolean }) => {
      const ck = await openCheckpoint(dir);
      const c = ck.config;
      const context = o.context ?? c.maxPositions;
      const kernel = loadAddon().kernelInfo();
      const mem = estimateMemory(c, { weightBytes: ck.totalBytes, batchTokens: o.batchTokens, contextTokens: context, threads: kernel.hardwareThreads });
      const json = {
        dir: ck.dir, modelType: c.modelType, config: c, parameters: ck.parameterCount, files: ck.files,
        dtypes: ck.dtypeCounts, memory: { ...mem, batchTokens: o.batchTokens, contextTokens: context },
        engine: kernel, notes: ck.notes, warnings: ck.warnings,
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
        ...ck.notes.map((n) => `note         ${n}`),
        ...ck.warnings.map((w) => `warning      ${w}`),
      ].join('\n'));
    });
}
