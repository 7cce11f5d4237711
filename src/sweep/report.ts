// Placeholder replaced below.
import type { SweepPlan } from './plan.js';
export async function writeSweepReport(_plan: SweepPlan, _dir: string): Promise<{ html: string; json: string; csv: string; cells: number; missing: number }> {
  throw new Error('not yet');
}
