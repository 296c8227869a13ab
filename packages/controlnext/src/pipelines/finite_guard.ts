// Numerical guard of a sampling loop (issue 17 item 4: one NaN in the latents, a weight or a config
// number gave an all-black PNG and exit code 0). After each step the latents are probed with one small
// reduction, sum(x * 0): 0 when every element is finite, NaN as soon as one is NaN or infinite (Inf * 0
// is NaN, and NaN survives the sum), so the probe is exact and cannot overflow. The probe's one value is
// read back one step late: step i's read is awaited after step i+1 has been queued, so a GPU never waits
// for the host between steps. A non-finite probe stops the loop with an error naming the step.

import { ops, type Tensor } from '@cnx/tensor';

/** A probed tensor held NaN or infinities; `subject` names it ("the latents after step 3 of 20 (timestep 801)"). */
export class NonFiniteError extends Error {
  constructor(readonly subject: string, hint: string) {
    super(`${subject} ${NON_FINITE_CONSEQUENCE} (${hint})`);
  }
}

/** What a NonFiniteError says after its subject. */
export const NON_FINITE_CONSEQUENCE = 'holds NaN or infinite values, so the image would come out black or as noise';

export class FiniteGuard {
  private pending: { what: string; probe: Tensor; value: Promise<Float32Array> } | undefined;

  constructor(private readonly enabled: boolean, private readonly hint: string) {}

  /** Start probing `t` (left unchanged); first settles the previous probe, which may throw. */
  async watch(t: Tensor, what: string): Promise<void> {
    if (!this.enabled) return;
    const zero = ops.affine(t, 0);
    const probe = ops.sum(zero);
    zero.dispose();
    const previous = this.pending;
    this.pending = { what, probe, value: probe.data() };
    if (previous) await this.check(previous);
  }

  /** Wait for the last probe; throws a NonFiniteError naming what it probed when it was not finite. */
  async settle(): Promise<void> {
    const p = this.pending;
    this.pending = undefined;
    if (p) await this.check(p);
  }

  /** Drop a pending probe without reading it (the loop failed for another reason). */
  discard(): void {
    const p = this.pending;
    this.pending = undefined;
    if (!p) return;
    // The read may still be in flight; freeing the probe aborts it (WebGPU: mapAsync rejects with an
    // AbortError). Nobody wants that value any more, so its rejection is handled here, not left unhandled.
    p.value.catch(() => undefined);
    p.probe.dispose();
  }

  private async check(p: { what: string; probe: Tensor; value: Promise<Float32Array> }): Promise<void> {
    let v: number;
    try {
      v = (await p.value)[0]!;
    } finally {
      p.probe.dispose();
    }
    if (!Number.isFinite(v)) {
      this.discard();
      throw new NonFiniteError(p.what, this.hint);
    }
  }
}
