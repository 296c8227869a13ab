// The SVD sampler's schedule (spec 6.3): Karras sigmas 700 -> 0.002 then 0, c_noise = 0.25 ln sigma,
// init_noise_sigma = sqrt(700^2 + 1); and its configuration guard. sched_euler_svd checks the numbers
// against diffusers.
import { createSvdScheduler } from '@cnx/unet';
import { describe, expect, it } from 'vitest';

describe('SVD Euler scheduler', () => {
  it('Karras sigmas from sigma_max to sigma_min, continuous timesteps 0.25 ln(sigma)', () => {
    const s = createSvdScheduler();
    s.setTimesteps(25);
    expect(s.sigmas.length).toBe(26);
    expect(s.sigmas[0]).toBeCloseTo(700, 3);
    expect(s.sigmas[24]).toBeCloseTo(0.002, 8);
    expect(s.sigmas[25]).toBe(0);
    for (let i = 0; i < 25; i++) expect(s.timesteps[i]).toBeCloseTo(0.25 * Math.log(s.sigmas[i]!), 5);
    expect(s.initNoiseSigma).toBeCloseTo(Math.sqrt(700 * 700 + 1), 6);
  });

  it('refuses a configuration that is not continuous-time v-prediction', () => {
    expect(() => createSvdScheduler({ prediction_type: 'epsilon' })).toThrow(/v_prediction/);
    expect(() => createSvdScheduler({ _class_name: 'DDIMScheduler' })).toThrow(/EulerDiscreteScheduler/);
  });
});
