/**
 * Resuming a steering measure (the unit log of src/io/unit-log.ts): its engine work comes in units — a text scored
 * under one intervention (ppl-matrix), the prompts generated under one (forcing, fallback), a batch of
 * log-likelihoods (lss) — logged in `<out>.partial.jsonl`, addressed by the unit's arguments (prompts or pairs, the
 * intervention) and the content of the files its intervention reads (mask, statistics).
 */
import { openUnitLog, unitRunKey, type UnitLog, type UnitLogKind } from '../io/unit-log.js';

export const STEER_PARTIAL_SCHEMA = 'langneurons-steer-partial/1';
const STEER_LOG: UnitLogKind = { schema: STEER_PARTIAL_SCHEMA, owner: 'langneurons steer' };

/** `<out>.partial.jsonl`. */
export const partialFile = (out: string): string => `${out}.partial.jsonl`;

/** The key of a measure's run: what every unit's value depends on besides its arguments. */
export const steerRunKey = (fields: Record<string, unknown>): string => unitRunKey(STEER_LOG, fields);

/** The unit log of the measure writing `out`, for a run of `key` (openUnitLog). */
export const openSteerLog = (out: string, key: string, fileHashes: (files: string[]) => Promise<unknown>): Promise<UnitLog> =>
  openUnitLog(partialFile(out), STEER_LOG, key, fileHashes);
