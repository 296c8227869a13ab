// The multistep solvers' convert_model_output (diffusers v0.29.2 scheduling_dpmsolver_multistep.py and
// scheduling_unipc_multistep.py, the same formulas in both): the model's output at noise level sigma
// turned into the quantity the solver works on, the data prediction x0 or the noise prediction eps.
// With alpha_t = 1/sqrt(sigma^2+1), sigma_t = sigma*alpha_t and x = alpha_t x0 + sigma_t eps.

import { ops, type Tensor } from '@cnx/tensor';
import { sigmaToAlphaSigma, type PredictionType } from './noise_schedule.js';

/** x0 (`toX0`, DPM-Solver++ / UniPC predict_x0) or eps from a model output of the given type; a new tensor. */
export function convertModelOutput(modelOutput: Tensor, sample: Tensor, sigma: number, p: PredictionType, toX0: boolean): Tensor {
  const { alpha, sigmaT } = sigmaToAlphaSigma(sigma);
  if (toX0) {
    if (p === 'epsilon') return ops.linearCombination([[sample, 1 / alpha], [modelOutput, -sigmaT / alpha]]);
    if (p === 'sample') return modelOutput.reshape(modelOutput.shape);
    return ops.linearCombination([[sample, alpha], [modelOutput, -sigmaT]]);
  }
  if (p === 'epsilon') return modelOutput.reshape(modelOutput.shape);
  if (p === 'sample') return ops.linearCombination([[sample, 1 / sigmaT], [modelOutput, -alpha / sigmaT]]);
  return ops.linearCombination([[modelOutput, alpha], [sample, sigmaT]]);
}
