export { F32_ONLY_RUNNERS, runCase, type CaseResult, type CheckResult } from './run_case.js';
export { GoldenCase, type Runner, type Produced, type RunnerOutput, type DerivedCheck, type CaseJson } from './golden_case.js';
export { runners } from './registry.js';
export { compareArrays } from './compare.js';
export { applyDiff, describeDiff, diffTrees, isEmptyDiff, listFiles, type CaseChange, type TreeDiff } from './refresh.js';
