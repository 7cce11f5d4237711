// The tool's version, once, from package.json: recorded in every output (statistics, results, recipes, sweep steps)
// and part of what decides whether earlier work is reused (a sweep step's hash, a demo step's key), so that work
// done under other defaults is not taken for this version's.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { packageRoot } from './native/addon.js';

export const TOOL_VERSION: string = (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
