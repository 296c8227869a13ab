// Runner kinds, keyed by case.json's `runner` field. One file per kind under runners/; adding a kind is
// one import and one entry here.

import type { Runner } from './golden_case.js';
import { opLinear } from './runners/op_linear.js';
import { opSoftmax } from './runners/op_softmax.js';

export const runners: Readonly<Record<string, Runner>> = {
  op_linear: opLinear,
  op_softmax: opSoftmax,
};
